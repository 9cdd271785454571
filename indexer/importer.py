"""Galleries from precomputed vectors: ``indexer import GALLERY VECTORS.parquet`` (inverse of export).

Input columns: ``label`` (string), ``vector`` (list or fixed-size list of float32/float64), and
optionally ``source`` and ``sha256`` (what ``indexer export`` writes).  The file's key-value
metadata ``docretriever.encoder.{name,fingerprint,dim}`` (written by export) names the encoder
that made the vectors.

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
import pyarrow.parquet as pq

from .errors import GalleryError

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


def read_vectors_file(path: str | os.PathLike, dim: int | None = None) -> VectorsFile:
    """Read and validate ``path``; ``dim`` (the gallery's) defaults to the metadata's, then the data's."""
    path = Path(path)
    try:
        table = pq.read_table(str(path))
    except FileNotFoundError:
        raise GalleryError(f"{path}: file not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise GalleryError(f"{path}: not a readable Parquet file ({exc})") from None
    enc = encoder_from_metadata(table.schema.metadata, str(path))
    missing = [c for c in ("label", "vector") if c not in table.column_names]
    if missing:
        raise GalleryError(f"{path}: missing column(s) {missing}; need label, vector (optional: source, sha256); "
                           f"has {table.column_names}")
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
        lengths = np.asarray(pa.compute.list_value_length(vec_col).fill_null(0).to_numpy(zero_copy_only=False))
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
    return VectorsFile(path, [str(x) for x in labels], vectors, sources, sha, enc)


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
