"""What a bulk result file says about itself: run identity and Parquet key-value metadata.

A results file outlives the job: months later someone must be able to tell which model,
gallery generation and threshold produced each label.  So every part and the merged file carry
the full run description as JSON under ``docretriever.bulk``, plus flat ``docretriever.*`` keys
for tools that show key-value metadata (``parquet-tools meta``, DuckDB ``parquet_kv_metadata``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .bulk_batch import SCHEMA_VERSION

if TYPE_CHECKING:
    from encoders import Encoder

    from .retriever import Retriever

__all__ = ["META_KEY", "docretriever_version", "embed_identity", "embed_metadata", "read_result_metadata", "run_metadata",
           "with_run_metadata"]

META_KEY = "docretriever.bulk"


def docretriever_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("docretriever")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def gallery_info(retriever: "Retriever") -> dict[str, Any]:
    """Path (absolute when on disk), generation, size of the retriever's gallery."""
    g = retriever.gallery
    manifest = getattr(g, "manifest", None) or {}
    path = getattr(g, "path", None)
    if path is not None and os.path.isdir(str(path)):
        path = str(Path(path).resolve())
    return {"path": None if path is None else str(path), "generation": manifest.get("generation"),
            "count": retriever.count, "labels": retriever.n_labels}


def embed_identity(specs: Sequence[str], encoder: "Encoder") -> dict[str, Any]:
    """What must match to continue an interrupted `retriever embed`: inputs and model."""
    return {"kind": "embed", "inputs": [str(s) for s in specs],
            "model": {"name": encoder.name, "fingerprint": encoder.fingerprint}, "schema_version": SCHEMA_VERSION}


def embed_metadata(specs: Sequence[str], encoder: "Encoder", engine: str) -> dict[str, Any]:
    """The description stored in an embedding file (the model, so `indexer import` binds to it)."""
    c = encoder.contract
    return {"kind": "embed", "schema_version": SCHEMA_VERSION, "docretriever_version": docretriever_version(),
            "engine": engine, "inputs": [str(s) for s in specs],
            "model": {"name": encoder.name, "version": c.version, "fingerprint": encoder.fingerprint,
                      "dim": int(encoder.dim), "input_size": list(c.input_size)},
            "vector": "L2-normalised; cosine = dot product"}


def run_metadata(specs: Sequence[str], retriever: "Retriever", with_features: bool, engine: str) -> dict[str, Any]:
    """The run description stored in every part and in the merged file."""
    enc = retriever.encoder
    c = enc.contract
    return {
        "schema_version": SCHEMA_VERSION,
        "docretriever_version": docretriever_version(),
        "engine": engine,
        "inputs": [str(s) for s in specs],
        "model": {"name": enc.name, "version": c.version, "fingerprint": enc.fingerprint, "dim": int(enc.dim),
                  "input_size": list(c.input_size)},
        "gallery": gallery_info(retriever),
        "threshold": float(retriever.threshold),
        "threshold_origin": retriever.threshold_origin,
        "fpr": retriever.fpr,
        "fpir": retriever.fpir,
        "operating_point": retriever.operating_point.to_dict(),
        "top_k": int(retriever.top_k),
        "labels": None if retriever.labels is None else list(retriever.labels),
        "search_params": dict(sorted((retriever.search_params or {}).items())) or None,
        "with_features": bool(with_features),
        "score": "cosine in [-1, 1]; the reference project's score is (cos + 1) / 2",
    }


def with_run_metadata(schema: pa.Schema, meta: dict[str, Any]) -> pa.Schema:
    """``schema`` carrying ``meta`` as JSON plus flat convenience keys."""
    flat = {
        "docretriever.version": meta.get("docretriever_version"),
        "docretriever.schema_version": meta.get("schema_version"),
        "docretriever.model_name": (meta.get("model") or {}).get("name"),
        "docretriever.model_fingerprint": (meta.get("model") or {}).get("fingerprint"),
        "docretriever.gallery_path": (meta.get("gallery") or {}).get("path"),
        "docretriever.gallery_generation": (meta.get("gallery") or {}).get("generation"),
        "docretriever.threshold": meta.get("threshold"),
        "docretriever.fpr": meta.get("fpr"),
        "docretriever.fpir": meta.get("fpir"),
        "docretriever.rule": (meta.get("operating_point") or {}).get("rule"),
    }
    model = meta.get("model") or {}
    # the keys `indexer export` writes and `indexer import` reads: vectors carry their model
    flat.update({"docretriever.encoder.name": model.get("name"), "docretriever.encoder.fingerprint":
                 model.get("fingerprint"), "docretriever.encoder.dim": model.get("dim")})
    kv = {k: "" if v is None else str(v) for k, v in flat.items()}
    kv[META_KEY] = json.dumps(meta, sort_keys=True)
    return schema.with_metadata(kv)


def read_result_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The run description of a bulk results file, or None if it is not one (or not Parquet)."""
    try:
        md = pq.read_schema(str(path)).metadata or {}
    except Exception:  # not Parquet / unreadable: the caller decides what that means
        return None
    raw = md.get(META_KEY.encode())
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None
