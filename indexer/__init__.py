"""Indexer: the register gallery (FAISS index + Parquet items + manifest) and the `indexer` CLI.

>>> import encoders, indexer
>>> enc = encoders.load()
>>> g = indexer.Gallery.build("register_data", "gallery", enc)        # one folder per document type
>>> scores, ids = g.search(enc.encode(["query.jpg"]), k=5)            # cosine in [-1, 1]
>>> g.labels_of(ids)

Large galleries: ``Gallery.build(..., index_spec="auto")`` (exact search while small, IVF with 4-bit
fast-scan PQ codes and exact re-ranking above ``specs.AUTO_FLAT_MAX``), ``g.search(feats, k, params={"nprobe": 32})``,
``g.add_vectors(vectors, labels, encoder=...)`` for precomputed features, ``g.compact()``.
"""
from encoders.decode import DOCUMENT_SUFFIXES, IMAGE_SUFFIXES

from .errors import (BadImagesError, EncoderMismatchError, GalleryCorruptError, GalleryError, GalleryLockedError,
                     LabelError, NearDuplicateError, NotAGalleryError, UnknownItemsError)
from .gallery import DEFAULT_LOCK_TIMEOUT, FORMAT_VERSION, NEAR_DUPLICATE_BOUND, AddResult, Gallery
from .importer import EncoderInfo
from .index import PAD_SCORE, make_index, set_faiss_threads
from .labels import LABEL_MODES, scan_register
from .specs import Plan, Spec, parse_spec

__all__ = [
    "AddResult", "BadImagesError", "DEFAULT_LOCK_TIMEOUT", "EncoderInfo", "EncoderMismatchError", "FORMAT_VERSION",
    "DOCUMENT_SUFFIXES", "Gallery", "GalleryCorruptError", "GalleryError", "GalleryLockedError", "IMAGE_SUFFIXES",
    "LABEL_MODES", "LabelError", "Plan", "Spec", "parse_spec",
    "NEAR_DUPLICATE_BOUND", "NearDuplicateError", "NotAGalleryError", "PAD_SCORE", "UnknownItemsError",
    "make_index", "scan_register", "set_faiss_threads",
]
