"""Indexer: the register gallery (FAISS index + Parquet items + manifest) and the `indexer` CLI.

>>> import encoders, indexer
>>> enc = encoders.load()
>>> g = indexer.Gallery.build("register_data", "gallery", enc)        # one folder per document type
>>> scores, ids = g.search(enc.encode(["query.jpg"]), k=5)            # cosine in [-1, 1]
>>> g.labels_of(ids)
"""
from .errors import (BadImagesError, EncoderMismatchError, GalleryCorruptError, GalleryError, GalleryLockedError,
                     LabelError, NearDuplicateError, NotAGalleryError, UnknownItemsError)
from .gallery import DEFAULT_LOCK_TIMEOUT, FORMAT_VERSION, NEAR_DUPLICATE_BOUND, AddResult, Gallery
from .index import PAD_SCORE, make_index, set_faiss_threads
from .labels import IMAGE_SUFFIXES, LABEL_MODES, scan_register

__all__ = [
    "AddResult", "BadImagesError", "DEFAULT_LOCK_TIMEOUT", "EncoderMismatchError", "FORMAT_VERSION", "Gallery",
    "GalleryCorruptError", "GalleryError", "GalleryLockedError", "IMAGE_SUFFIXES", "LABEL_MODES", "LabelError",
    "NEAR_DUPLICATE_BOUND", "NearDuplicateError", "NotAGalleryError", "PAD_SCORE", "UnknownItemsError",
    "make_index", "scan_register", "set_faiss_threads",
]
