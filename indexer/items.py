"""The items table (one row per stored vector) and its Parquet I/O.

Columns: id int64 (= the FAISS id, never reused), label, source (absolute path of the image
registered), sha256 of the image bytes (duplicate detection and verify), added_at (UTC),
page (nullable, for pages of multi-page sources), note (nullable, free text).

A page of a multi-page file (TIFF, PDF) is an item of its own: its ``page`` is the 0-based page
index (0 for an image; null for vectors imported without one), its source is the file's path with
``#page=N`` for pages after the first (what ``indexer import`` gives an embedding file's pages), and
its key in the ``sha256`` column is
:func:`page_key`: the file's hash for the first page, a hash of (file hash, page) for the others,
so adding the same PDF twice skips every page, not only the first.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
from typing import BinaryIO, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("sha256", pa.string(), nullable=False),
    pa.field("added_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("page", pa.int32()),
    pa.field("note", pa.string()),
])


def page_key(file_sha256: str, page: int | None) -> str:
    """The duplicate key of page ``page`` of a file whose bytes hash to ``file_sha256``."""
    if not file_sha256 or not page:
        return file_sha256
    return hashlib.sha256(f"{file_sha256}#page={int(page)}".encode()).hexdigest()


def page_source(path: str, page: int | None) -> str:
    """The source text of a page: the path, with ``#page=N`` after the first page."""
    return path if not page else f"{path}#page={int(page)}"


def file_of(source: str, page: int | None) -> str:
    """The file a page's source names (:func:`page_source` undone)."""
    suffix = f"#page={int(page)}" if page else ""
    return source[:-len(suffix)] if suffix and source.endswith(suffix) else source


def empty() -> pa.Table:
    return SCHEMA.empty_table()


def make_rows(ids: Sequence[int], labels: Sequence[str], sources: Sequence[str], sha256s: Sequence[str],
              pages: Sequence[int | None] | None = None, notes: Sequence[str | None] | None = None,
              added_at: dt.datetime | None = None) -> pa.Table:
    n = len(ids)
    now = added_at or dt.datetime.now(dt.timezone.utc)
    return pa.table({
        "id": pa.array(np.asarray(ids, dtype=np.int64), pa.int64()),
        "label": pa.array(list(labels), pa.string()),
        "source": pa.array(list(sources), pa.string()),
        "sha256": pa.array(list(sha256s), pa.string()),
        "added_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        "page": pa.array(list(pages) if pages is not None else [None] * n, pa.int32()),
        "note": pa.array(list(notes) if notes is not None else [None] * n, pa.string()),
    }, schema=SCHEMA)


def write(table: pa.Table, fh: BinaryIO) -> None:
    pq.write_table(table.cast(SCHEMA), fh, compression="zstd")


def read(path: str | os.PathLike) -> pa.Table:
    table = pq.read_table(str(path))
    missing = [f.name for f in SCHEMA if f.name not in table.column_names]
    if missing:
        raise ValueError(f"missing columns {missing}")
    return table.select(SCHEMA.names).cast(SCHEMA)
