"""Galleries from precomputed vectors: ``indexer import GALLERY VECTORS.parquet`` (inverse of export).

Input columns: ``label`` (string), ``vector`` (list or fixed-size list of float32/float64), and
optionally ``source`` and ``sha256`` (what ``indexer export`` writes).  The file's key-value
metadata ``docretriever.encoder.{name,fingerprint,dim}`` (written by export and by
``retriever embed``) names the encoder that made the vectors.

A ``retriever embed`` file (``path``, ``page``, ``vector``, ``sha256``, ``error``) is read as is:
labels come from another column (``label_column``) or from the paths (``label_from_path``, the
labels ``indexer build`` would give the same files below their common directory); ``path`` (with
``#page=N`` after the first page) is the source; rows with an ``error`` (no vector) are skipped and
counted.

Why so strict: a vector from another model, of another dimension, unnormalised or NaN does not
fail loudly later — it silently ruins every search that meets it.  So every bad row is listed
(0-based row numbers), nothing is added, and a file whose metadata names another encoder than
the gallery's (or than ``--model``) is refused.  No image is read; the gallery is still bound to
an encoder fingerprint, taken from ``--model`` or the file's metadata.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import GalleryError
from .items import page_source

MAX_LISTED = 50
NORM_TOLERANCE = 1e-3  # | ||v|| - 1 | allowed (same as verify)
META_PREFIX = b"docretriever.encoder."


@dataclass(frozen=True)
class EncoderInfo:
    """An encoder known only by its identity (name, fingerprint, dim) — e.g. from a vectors file's
    metadata — enough to bind or check a gallery without loading a model."""

    name: str
    fingerprint: str
    dim: int


@dataclass
class VectorsFile:
    path: Path
    labels: list[str]
    vectors: np.ndarray  # (n, dim) float32, validated
    sources: list[str] | None
    sha256: list[str | None] | None
    encoder: EncoderInfo | None  # from the file's metadata
    skipped_errors: int = 0  # `retriever embed` rows that carry an error instead of a vector
    pages: list[int | None] | None = None  # page of each row in its file (a `retriever embed` file)


def _rows(idx: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:MAX_LISTED])
    return shown + (f" ... ({len(idx)} rows)" if len(idx) > MAX_LISTED else "")


def encoder_from_metadata(meta: dict[bytes, bytes] | None, where: str) -> EncoderInfo | None:
    if not meta or META_PREFIX + b"fingerprint" not in meta:
        return None
    try:
        return EncoderInfo(meta.get(META_PREFIX + b"name", b"?").decode(), meta[META_PREFIX + b"fingerprint"].decode(),
                           int(meta.get(META_PREFIX + b"dim", b"0")))
    except ValueError:
        raise GalleryError(f"{where}: unreadable encoder metadata {meta.get(META_PREFIX + b'dim')!r}") from None


def check_vectors(vectors: Any, dim: int, what: str) -> np.ndarray:
    """(n, dim) finite unit-norm float32 rows, or GalleryError listing every bad row (0-based)."""
    try:
        v = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"{what}: not a numeric (n, {dim}) array ({exc})") from None
    if v.ndim != 2 or v.shape[1] != dim:
        shape = "x".join(str(s) for s in v.shape)
        raise GalleryError(f"{what}: vectors have shape {shape}, the gallery holds {dim}-d vectors")
    problems = []
    finite = np.isfinite(v).all(axis=1)
    if not finite.all():
        problems.append(f"not finite (NaN or inf) in rows {_rows(np.flatnonzero(~finite))}")
    norms = np.linalg.norm(np.where(finite[:, None], v, 0), axis=1)
    off = finite & (np.abs(norms - 1.0) > NORM_TOLERANCE)
    if off.any():
        bad = np.flatnonzero(off)
        problems.append(f"not unit length (|norm - 1| > {NORM_TOLERANCE:g}; features must be L2-normalised) in rows "
                        f"{_rows(bad)} (e.g. row {int(bad[0])} has norm {norms[bad[0]]:.6f})")
    if problems:
        raise GalleryError(f"{what}: bad vectors (0-based row numbers); nothing was added:\n"
                           + "\n".join(f"  - {p}" for p in problems))
    return np.ascontiguousarray(v)


def _embedded_rows(table: pa.Table, path: Path, label_column: str, label_from_path: str | None
                   ) -> tuple[pa.Table, int]:
    """A `retriever embed` file made importable: error rows dropped, labels and sources from paths."""
    skipped = 0
    if "error" in table.column_names:
        ok = pc.is_null(table.column("error"))
        skipped = table.num_rows - int(pc.sum(ok).as_py() or 0)
        table = table.filter(ok)
    if "path" in table.column_names and "source" not in table.column_names:
        paths = [str(p) for p in table.column("path").to_pylist()]
        pages = table.column("page").to_pylist() if "page" in table.column_names else [0] * len(paths)
        table = table.append_column("source", pa.array([page_source(p, pg) for p, pg in zip(paths, pages)],
                                                        pa.string()))
    if label_from_path is not None:
        if "path" not in table.column_names:
            raise GalleryError(f"{path}: --label-from-path needs a 'path' column (a `retriever embed` file)")
        from .labels import check_label, label_for

        paths = [Path(str(p)) for p in table.column("path").to_pylist()]
        root = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path(".")
        labels = []
        for p in paths:
            lab = label_for(p, root, label_from_path)
            if lab is None:
                raise GalleryError(f"{path}: {p} is directly in {root}, the inputs' common folder: it has no folder "
                                   "label (use --label-from-path file, or a label column)")
            labels.append(check_label(lab))
        table = table.drop_columns([c for c in ("label",) if c in table.column_names])
        table = table.append_column("label", pa.array(labels, pa.string()))
    elif label_column != "label":
        if label_column not in table.column_names:
            raise GalleryError(f"{path}: no column {label_column!r} (has {table.column_names})")
        table = table.drop_columns([c for c in ("label",) if c in table.column_names])
        table = table.append_column("label", table.column(label_column).cast(pa.string()))
    return table, skipped


def read_vectors_file(path: str | os.PathLike, dim: int | None = None, label_column: str = "label",
                      label_from_path: str | None = None) -> VectorsFile:
    """Read and validate ``path``; ``dim`` (the gallery's) defaults to the metadata's, then the data's.
    ``label_column``: the column holding labels; ``label_from_path`` ("folder" or "file"): labels from a
    ``path`` column instead, as ``indexer build`` would give them below the paths' common folder."""
    path = Path(path)
    try:
        table = pq.read_table(str(path))
    except FileNotFoundError:
        raise GalleryError(f"{path}: file not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise GalleryError(f"{path}: not a readable Parquet file ({exc})") from None
    enc = encoder_from_metadata(table.schema.metadata, str(path))
    table, skipped = _embedded_rows(table, path, label_column, label_from_path)
    missing = [c for c in ("label", "vector") if c not in table.column_names]
    if missing:
        hint = " (a `retriever embed` file: give --label-column or --label-from-path)" if "path" in table.column_names \
            else ""
        raise GalleryError(f"{path}: missing column(s) {missing}; need label, vector (optional: source, sha256); "
                           f"has {table.column_names}{hint}")
    n = table.num_rows
    problems = []
    labels_col = table.column("label")
    if not (pa.types.is_string(labels_col.type) or pa.types.is_large_string(labels_col.type)):
        raise GalleryError(f"{path}: column 'label' is {labels_col.type}, not string")
    labels = labels_col.to_pylist()
    empty = np.flatnonzero([lab is None or not str(lab).strip() for lab in labels])
    if len(empty):
        problems.append(f"empty or null label in rows {_rows(empty)}")
    vec_col = table.column("vector").combine_chunks()
    vtype = vec_col.type
    if not (pa.types.is_list(vtype) or pa.types.is_large_list(vtype) or pa.types.is_fixed_size_list(vtype)) or \
            not pa.types.is_floating(vtype.value_type):
        raise GalleryError(f"{path}: column 'vector' is {vtype}; expected a list of floats per row")
    null = np.asarray(vec_col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_fixed_size_list(vtype):
        lengths = np.full(n, vtype.list_size)
    else:
        lengths = np.asarray(pc.list_value_length(vec_col).fill_null(0).to_numpy(zero_copy_only=False))
    want = dim if dim is not None else (enc.dim if enc is not None and enc.dim else None)
    if want is None:
        ok = lengths[~null]
        want = int(np.bincount(ok).argmax()) if len(ok) else 0
    if null.any():
        problems.append(f"null vector in rows {_rows(np.flatnonzero(null))}")
    wrong = np.flatnonzero(~null & (lengths != want))
    if len(wrong):
        problems.append(f"wrong dimension in rows {_rows(wrong)} (row {int(wrong[0])} has {int(lengths[wrong[0]])} "
                        f"values; expected {want})")
    if problems:
        raise GalleryError(f"{path}: bad rows (0-based row numbers); nothing was added:\n"
                           + "\n".join(f"  - {p}" for p in problems))
    if pa.types.is_fixed_size_list(vtype):
        flat = vec_col.values
    else:
        flat = vec_col.flatten()
    vectors = check_vectors(np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, want),
                            want, str(path))
    sources = [str(s) for s in table.column("source").to_pylist()] if "source" in table.column_names else None
    sha = table.column("sha256").to_pylist() if "sha256" in table.column_names else None
    # an embedding file's sha256 is its file's hash, shared by the file's pages: with the page, the
    # gallery keys each page as `indexer add` does (items.page_key)
    pages = table.column("page").to_pylist() if "page" in table.column_names else None
    return VectorsFile(path, [str(x) for x in labels], vectors, sources, sha, enc, skipped, pages)


def resolve_encoder(vf: VectorsFile, model_encoder: Any | None) -> Any:
    """The encoder the vectors belong to: ``--model`` and/or the file's metadata, which must agree."""
    meta = vf.encoder
    if model_encoder is not None and meta is not None and meta.fingerprint != model_encoder.fingerprint:
        raise GalleryError(
            f"{vf.path}: its vectors were made by encoder {meta.name!r} (fingerprint {meta.fingerprint}), but "
            f"--model is {model_encoder.name!r} (fingerprint {model_encoder.fingerprint}); vectors from different "
            "models are not comparable")
    enc = model_encoder if model_encoder is not None else meta
    if enc is None:
        raise GalleryError(f"{vf.path}: no encoder metadata (docretriever.encoder.fingerprint): give --model, the "
                           "ONNX model that made these vectors, so the gallery is bound to it")
    if vf.vectors.shape[1] != int(enc.dim):
        raise GalleryError(f"{vf.path}: vectors are {vf.vectors.shape[1]}-d but encoder {enc.name!r} gives "
                           f"{enc.dim}-d vectors")
    return enc
