"""Retriever: classify document images against a register gallery, accept or reject by threshold.

>>> from retriever import Retriever
>>> r = Retriever("my_gallery", fpr=1e-3)          # threshold from the gallery/model table
>>> res = r.classify_one("scan.jpg")
>>> res.label, res.score, res.accepted             # score: cosine in [-1, 1]

Scores are cosine similarities in [-1, 1]; the reference project (DocClassifier) reported
``(cos + 1) / 2`` in [0, 1] (see :func:`retriever.thresholds.to_reference_score`).

Names are imported lazily so ``import retriever`` stays cheap (no model, FAISS or Arrow load).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compat import DocClassifier
    from .errors import RetrieverBaseError, RetrieverError
    from .retriever import Result, Retriever
    from .thresholds import ThresholdTable

__all__ = ["DocClassifier", "Result", "Retriever", "RetrieverBaseError", "RetrieverError", "ThresholdTable",
           "default_register_dir"]

_LAZY = {
    "Retriever": ".retriever",
    "Result": ".retriever",
    "ThresholdTable": ".thresholds",
    "DocClassifier": ".compat",
    "RetrieverBaseError": ".errors",
    "RetrieverError": ".errors",
}


def default_register_dir() -> Path | None:
    """The shipped ``register_data/`` folder (inside the package, else at the repo root), or None.

    Installed wheels may carry it as package data next to this file; a source checkout has it at
    the repository root.  None when neither exists, so callers can say what is missing.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "register_data", here.parent / "register_data"):
        if candidate.is_dir():
            return candidate
    return None


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'retriever' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
