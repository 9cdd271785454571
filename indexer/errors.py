"""Gallery errors: each one names the gallery file or input file and says what to do about it.

The CLI turns every :class:`GalleryError` into a one-line-per-problem message and exit status 1;
library callers can catch the specific subclasses.
"""
from __future__ import annotations

from typing import Sequence


class GalleryError(Exception):
    """A gallery could not be opened or changed as asked; the message says why and what to do."""


class NotAGalleryError(GalleryError):
    """The directory holds no (readable) manifest.json."""


class GalleryCorruptError(GalleryError):
    """The manifest and the files it names disagree, or a named file is missing or unreadable."""


class EncoderMismatchError(GalleryError):
    """The gallery was built by another encoder; its vectors cannot be compared with this one's."""

    def __init__(self, gallery: str, gallery_fp: str, gallery_name: str, encoder_fp: str, encoder_name: str) -> None:
        super().__init__(
            f"{gallery}: built with encoder {gallery_name!r} (fingerprint {gallery_fp}), but the encoder in use is "
            f"{encoder_name!r} (fingerprint {encoder_fp}); vectors from different models are not comparable. "
            f"Use the gallery's model (--model), or rebuild the gallery with this one "
            f"(indexer build REGISTER_DIR -o {gallery} --model MODEL --overwrite)"
        )
        self.gallery_fingerprint = gallery_fp
        self.encoder_fingerprint = encoder_fp


class GalleryLockedError(GalleryError):
    """Another writer holds the gallery lock."""

    def __init__(self, lock_file: str, timeout: float) -> None:
        super().__init__(
            f"gallery is locked by another writer: could not acquire {lock_file} within {timeout:g} s; "
            "wait for the other indexer command to finish (or raise --lock-timeout). If no writer is running, "
            "the lock is stale only if its process is gone: the OS releases it then, so retry."
        )
        self.lock_file = lock_file


class _ListError(GalleryError):
    """An error about several inputs at once; ``problems`` holds one line per input."""

    headline = "problems"

    def __init__(self, problems: Sequence[str], headline: str | None = None) -> None:
        self.problems = list(problems)
        head = headline or self.headline
        super().__init__(f"{head}:\n" + "\n".join(f"  - {p}" for p in self.problems))


class BadImagesError(_ListError):
    """Some inputs could not be read or decoded; nothing was added."""

    headline = "some images could not be read; nothing was added"


class LabelError(_ListError):
    """Labels could not be derived (images at the register root, collisions, empty labels)."""

    headline = "cannot derive labels"


class NearDuplicateError(_ListError):
    """Near-identical images would be registered under different labels (pass force=True to accept)."""

    headline = "near-identical images under different labels (would make both labels ambiguous); nothing was added"

    def __init__(self, problems: Sequence[str], bound: float) -> None:
        super().__init__(problems, f"{self.headline}; cosine >= {bound:g} for these pairs "
                                   "(use --force to register them anyway)")
        self.bound = bound


class UnknownItemsError(_ListError):
    """remove() was given labels or ids the gallery does not hold; nothing was removed."""

    headline = "not in the gallery; nothing was removed"
