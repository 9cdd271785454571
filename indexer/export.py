"""Export a gallery to one self-describing Parquet file (for analysis or another vector store).

Columns: id, label, source, sha256, vector (fixed_size_list<float32>[dim]).  The encoder's
name, fingerprint and dim travel in the file's key-value metadata, so whoever loads the vectors
can tell which model produced them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_write
from .gallery import Gallery


def export_parquet(gallery: Gallery, out: str | os.PathLike) -> int:
    """Write ``out`` atomically; returns the number of rows."""
    out = Path(out)
    ids, vecs = gallery.vectors()
    items = gallery.items  # sorted by id, same order as gallery.vectors()
    if not np.array_equal(ids, items.column("id").to_numpy()):
        raise RuntimeError(f"{gallery.path}: index and items disagree on ids; run `indexer verify`")
    dim = gallery.dim
    flat = pa.array(np.ascontiguousarray(vecs, dtype=np.float32).reshape(-1), pa.float32())
    table = pa.table({
        "id": items.column("id"), "label": items.column("label"), "source": items.column("source"),
        "sha256": items.column("sha256"), "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
    })
    enc = gallery.encoder_info
    manifest = {k: v for k, v in gallery.manifest.items() if k != "previous"}
    meta = {
        b"docretriever.encoder.name": str(enc["name"]).encode(),
        b"docretriever.encoder.fingerprint": str(enc["fingerprint"]).encode(),
        b"docretriever.encoder.dim": str(enc["dim"]).encode(),
        b"docretriever.metric": str(manifest.get("metric", "inner_product")).encode(),
        b"docretriever.gallery.generation": str(gallery.generation).encode(),
        b"docretriever.gallery.manifest": json.dumps(manifest, sort_keys=True).encode(),
    }
    table = table.replace_schema_metadata(meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda fh: pq.write_table(table, fh, compression="zstd"))
    return table.num_rows
