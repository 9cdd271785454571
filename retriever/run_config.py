"""One frozen description of a bulk job's decisions, built once and handed as is to every engine.

Why: the local threads, every Ray actor, the resume check and the result's metadata must agree on
the model, gallery generation, operating point, top-k, search parameters, label filter and columns.
Rebuilt in several places they drift (the Ray engine once dropped ``search_params`` and ``gpu_id``);
taken from one value they cannot.  :meth:`RunConfig.retriever` is how an actor (or anyone) makes
the very retriever the driver chose, and :meth:`RunConfig.identity` is what a resumed run must match.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

from .bulk_batch import SCHEMA_VERSION
from .errors import BulkError

if TYPE_CHECKING:
    from .retriever import Retriever

__all__ = ["RunConfig"]


@dataclass(frozen=True)
class RunConfig:
    """What decides the rows of a classification job (not how fast it runs: workers, batch size)."""

    model_path: str
    model_name: str
    fingerprint: str
    backend: str
    gpu_id: int
    gallery_path: str | None
    generation: int | None
    operating_point: dict
    top_k: int
    search_params: tuple[tuple[str, int], ...] | None
    labels: tuple[str, ...] | None
    with_features: bool

    @classmethod
    def of(cls, retriever: "Retriever", with_features: bool = False) -> "RunConfig":
        """The configuration a ready retriever embodies (its operating point as decided)."""
        from .bulk_meta import gallery_info

        enc = retriever.encoder
        g = gallery_info(retriever)
        return cls(model_path=str(getattr(enc, "path", "") or ""), model_name=enc.name, fingerprint=enc.fingerprint,
                   backend=str(getattr(enc, "backend", "cpu")), gpu_id=int(getattr(enc, "gpu_id", 0) or 0),
                   gallery_path=g["path"], generation=g["generation"],
                   operating_point=retriever.operating_point.to_dict(), top_k=int(retriever.top_k),
                   search_params=tuple(sorted((retriever.search_params or {}).items())) or None,
                   labels=retriever.labels, with_features=bool(with_features))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        d["search_params"] = tuple(tuple(p) for p in d["search_params"]) if d.get("search_params") else None
        d["labels"] = tuple(d["labels"]) if d.get("labels") else None
        return cls(**d)

    def retriever(self) -> "Retriever":
        """The retriever this configuration describes, loaded from the model file and gallery directory
        (refused if the gallery moved to another generation since the configuration was made)."""
        import encoders

        from .retriever import Retriever
        from .thresholds import OperatingPoint

        if not self.model_path or self.gallery_path is None:
            raise BulkError("this run configuration needs the model file and the gallery directory on disk")
        encoder = encoders.load(self.model_path, backend=self.backend, gpu_id=self.gpu_id)
        r = Retriever(self.gallery_path, encoder=encoder, top_k=self.top_k,
                      search_params=dict(self.search_params) if self.search_params else None,
                      operating_point=OperatingPoint.from_dict(self.operating_point),
                      labels=list(self.labels) if self.labels else None)
        found = (getattr(r.gallery, "manifest", None) or {}).get("generation")
        if self.generation is not None and found != self.generation:
            raise BulkError(f"gallery {self.gallery_path} is at generation {found} here, the run was configured at "
                            f"generation {self.generation}; do not change the gallery during a run")
        return r

    def identity(self, specs: Sequence[str]) -> dict[str, Any]:
        """Everything that must match for an interrupted run to be continued (see bulk_store)."""
        op = self.operating_point
        return {
            "inputs": [str(s) for s in specs],
            "model": {"name": self.model_name, "fingerprint": self.fingerprint},
            "gallery": {"path": self.gallery_path, "generation": self.generation},
            "threshold": round(float(op["threshold"]), 7),
            "rule": op.get("rule") or "cosine",
            "top_k": self.top_k,
            "labels": list(self.labels) if self.labels else None,
            "search_params": dict(self.search_params) if self.search_params else None,
            "with_features": self.with_features,
            "schema_version": SCHEMA_VERSION,
        }
