"""Every error the retriever raises on purpose, under one base class.

``except RetrieverBaseError`` catches them all (the command lines map it to exit status 1 with
the message alone); each subclass also derives from the builtin it used to be (``ValueError`` for
bad values, ``RuntimeError`` for a state that cannot work), so older ``except`` clauses still hold.
Errors from the layers below keep their own bases: :class:`encoders.EncoderError`,
:class:`encoders.DecodeError`, :class:`encoders.inputs.InputError` (an input spec that cannot be
read, shared with the indexer's reader), :class:`indexer.errors.GalleryError`.
"""
from __future__ import annotations

from encoders.inputs import InputError

__all__ = ["BulkError", "CalibrationError", "InputError", "NoThresholdTableError", "OutputError",
           "ResumeRefusedError", "RetrieverBaseError", "RetrieverError", "ThresholdError", "setup_errors"]


class RetrieverBaseError(Exception):
    """Base of the retriever's errors: the message says what is wrong and where."""


class RetrieverError(RetrieverBaseError, RuntimeError):
    """The retriever cannot work as asked (empty gallery, wrong feature shape, bad settings)."""


class ThresholdError(RetrieverBaseError, ValueError):
    """An operating point that cannot be chosen or a threshold table that cannot be used."""


class NoThresholdTableError(ThresholdError):
    """Neither the gallery nor the model has a table to read the asked operating point from."""


class CalibrationError(ThresholdError):
    """Labelled images that cannot calibrate a gallery (too few, unknown labels...)."""


class BulkError(RetrieverBaseError, RuntimeError):
    """A bulk job cannot start or continue (output in the way, bad settings)."""


class ResumeRefusedError(BulkError):
    """An interrupted or finished job differs from the one asked for; the message names how."""


class OutputError(RetrieverBaseError, ValueError):
    """The output name asks for a format this command cannot write."""


def setup_errors() -> tuple[type[BaseException], ...]:
    """What both command lines report as one message with exit status 1 (a job that cannot start
    or continue): the retriever's errors and those of the encoder and gallery layers."""
    from encoders import EncoderError
    from indexer.errors import GalleryError

    return (RetrieverBaseError, EncoderError, InputError, GalleryError)
