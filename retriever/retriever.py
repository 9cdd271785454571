"""Classify images against a register gallery: top-k over distinct labels, accept by threshold.

Scores are cosine similarities in [-1, 1] between L2-normalised features.  The reference
project (DocClassifier) reported ``(cos + 1) / 2`` in [0, 1]; convert with
:func:`retriever.thresholds.to_reference_score` (a reference score of 0.627 is cosine 0.254).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from .thresholds import ThresholdTable, to_reference_score

if TYPE_CHECKING:
    from encoders import Encoder
    from encoders.decode import DecodeError, ImageInput

__all__ = ["Result", "Retriever", "RetrieverError"]

# Exemplars fetched per wanted label before deepening: one label with many exemplars must not
# crowd the others out of the top-k, so we search deeper than k and keep each label's best.
SEARCH_DEPTH_FACTOR = 4


class RetrieverError(RuntimeError):
    """The retriever cannot work as asked (empty gallery, wrong feature shape, bad settings)."""


@dataclass
class Result:
    """One classification.

    ``label`` is always the best-scoring label, even when rejected: check ``accepted``.
    ``score`` is the cosine (in [-1, 1]) between the query and that label's best exemplar;
    the reference project's score is ``(score + 1) / 2`` (:attr:`reference_score`).
    ``top_k`` lists distinct labels with their best-exemplar cosine, best first; ``margin`` is
    best minus runner-up (None when the gallery has a single label).
    """

    label: str
    score: float
    accepted: bool
    threshold: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    margin: float | None = None
    source: str | None = None

    @property
    def reference_score(self) -> float:
        """The score on the reference project's ``(cos + 1) / 2`` scale, in [0, 1]."""
        return to_reference_score(self.score)

    @property
    def runner_up(self) -> tuple[str, float] | None:
        return self.top_k[1] if len(self.top_k) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain floats, top_k as a list of {"label", "score"}."""
        return {
            "source": self.source,
            "label": self.label,
            "score": round(float(self.score), 6),
            "accepted": bool(self.accepted),
            "threshold": round(float(self.threshold), 6),
            "margin": None if self.margin is None else round(float(self.margin), 6),
            "top_k": [{"label": lab, "score": round(float(s), 6)} for lab, s in self.top_k],
        }


def _describe_source(src: Any) -> str | None:
    return str(src) if isinstance(src, (str, os.PathLike)) else None


def _as_list(images: Any) -> list[Any]:
    """One image (path, bytes or a single HxW[xC] array) or an iterable of them -> a list."""
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)):
        return [images]
    if isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype != object:
        return [images]
    return list(images)


def _gallery_name(gallery: Any) -> str:
    for attr in ("path", "root", "directory"):
        value = getattr(gallery, attr, None)
        if value is not None:
            return str(value)
    return type(gallery).__name__


def _open_gallery(gallery: Any, encoder: "Encoder") -> Any:
    """A path opens an indexer Gallery, which refuses features from another encoder."""
    if isinstance(gallery, (str, os.PathLike)):
        from indexer.gallery import Gallery

        return Gallery.open(gallery, encoder=encoder)
    _check_encoder(gallery, encoder)
    return gallery


def _check_encoder(gallery: Any, encoder: "Encoder") -> None:
    """An already-open gallery: compare its recorded encoder fingerprint with ours.

    Raises the indexer's :class:`indexer.errors.EncoderMismatchError`, the same error
    ``Gallery.open(path, encoder)`` raises, so callers catch one thing either way.
    """
    from indexer.errors import EncoderMismatchError

    manifest = getattr(gallery, "manifest", None) or {}
    info = manifest.get("encoder") or {}
    recorded = info.get("fingerprint")
    if recorded and recorded != encoder.fingerprint:
        raise EncoderMismatchError(_gallery_name(gallery), recorded, info.get("name", "?"),
                                   encoder.fingerprint, encoder.name)


class Retriever:
    """Top-k retrieval over a register gallery with a measured accept/reject threshold.

    ``gallery``: a gallery directory or an open :class:`indexer.gallery.Gallery`.
    ``encoder``: an :class:`encoders.Encoder`; None loads the shipped default model.
    ``threshold``: an explicit cosine threshold in [-1, 1] (wins over ``fpr``).  Otherwise the
    threshold is the row of the threshold table for target ``fpr``: the gallery's own
    calibration if it has one, else the model's generic table (see :class:`ThresholdTable`).
    A reference-project threshold ``t`` on the (cos+1)/2 scale is cosine ``2*t - 1``.
    ``top_k``: how many distinct labels each result lists.
    ``search_params``: per-query index parameters for large approximate galleries (``{"nprobe": 16}``,
    ``{"efSearch": 256}``, ``{"rerank": 8}``); ignored by exact (flat) galleries.
    """

    def __init__(self, gallery: Any, encoder: "Encoder | None" = None, fpr: float = 1e-2,
                 threshold: float | None = None, top_k: int = 5, search_params: dict | None = None) -> None:
        if top_k < 1:
            raise RetrieverError(f"top_k must be >= 1, got {top_k}")
        if encoder is None:
            import encoders

            encoder = encoders.load()
        self.encoder = encoder
        self.gallery = _open_gallery(gallery, encoder)
        self.gallery_name = _gallery_name(self.gallery)
        self.top_k = int(top_k)
        self.search_params = dict(search_params) if search_params else None
        self._fpr_asked = float(fpr)
        self._threshold_asked = threshold
        self._configure()

    def _configure(self) -> None:
        """Sizes and threshold from the gallery's current state (again after :meth:`reload`)."""
        manifest = getattr(self.gallery, "manifest", None) or {}  # may be a copy: read it once
        self.count = int(manifest["count"]) if "count" in manifest else self._count_items()
        if self.count <= 0:
            raise RetrieverError(f"gallery {self.gallery_name} is empty; add exemplars first "
                                 "(`indexer add` or Gallery.add)")
        self.n_labels = int(manifest["labels"]) if "labels" in manifest else self._count_labels()
        self.table = ThresholdTable.resolve(self.encoder.contract, getattr(self.gallery, "calibration", None),
                                            gallery=f"gallery {self.gallery_name}")
        if self._threshold_asked is not None:
            threshold = float(self._threshold_asked)
            if not -1.0 <= threshold <= 1.0:
                raise RetrieverError(f"threshold {threshold!r} is not a cosine in [-1, 1] (a reference-project "
                                     "(cos+1)/2 score t is cosine 2*t - 1)")
            self.fpr: float | None = None
            self.threshold = threshold
            self.threshold_origin = "explicit threshold"
        else:
            row = self.table.row_for(self._fpr_asked)  # raises with a hint: no table / out of range
            self.fpr = self._fpr_asked
            self.threshold = float(row.threshold)
            self.threshold_origin = f"FPR {row.fpr:g} row of {self.table.source}"

    def reload(self) -> "Retriever":
        """Pick up a gallery another process changed (new exemplars, new calibration)."""
        if hasattr(self.gallery, "reload"):
            self.gallery.reload()
        self._configure()
        return self

    def _count_items(self) -> int:
        items = getattr(self.gallery, "items", None)
        return 0 if items is None else len(items)

    def _count_labels(self) -> int:
        items = getattr(self.gallery, "items", None)
        if items is None:
            return self.count
        return len(set(items.column("label").to_pylist()))

    def __repr__(self) -> str:
        return (f"Retriever(gallery={self.gallery_name!r}, items={self.count}, labels={self.n_labels}, "
                f"threshold={self.threshold:.4f} [{self.threshold_origin}], top_k={self.top_k})")

    # --- features -> results -------------------------------------------------------------------
    def classify_features(self, feats: np.ndarray, sources: Sequence[str | None] | None = None) -> list[Result]:
        """``(n, dim)`` L2-normalised features from this retriever's encoder -> results.

        For callers that already ran the encoder (bulk jobs); gives exactly what :meth:`classify`
        gives for the same images.
        """
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim == 1:
            feats = feats[None, :]
        if feats.ndim != 2 or feats.shape[1] != self.encoder.dim:
            raise RetrieverError(f"expected features of shape (n, {self.encoder.dim}), got {feats.shape}")
        n = len(feats)
        if sources is not None and len(sources) != n:
            raise RetrieverError(f"{len(sources)} sources for {n} feature rows")
        if n == 0:
            return []
        feats = np.ascontiguousarray(feats)
        ranked = self._ranked_labels(feats)
        out = []
        for i, labels in enumerate(ranked):
            top = labels[:self.top_k]
            best_label, best = top[0]
            margin = best - labels[1][1] if len(labels) > 1 else None
            out.append(Result(label=best_label, score=best, accepted=bool(best >= self.threshold),
                              threshold=self.threshold, top_k=top, margin=margin,
                              source=None if sources is None else sources[i]))
        return out

    def _ranked_labels(self, feats: np.ndarray) -> list[list[tuple[str, float]]]:
        """Per query: distinct labels by best-exemplar score, at least ``top_k + 1`` when possible.

        Searches ``SEARCH_DEPTH_FACTOR * (top_k + 1)`` exemplars, and deepens (x4) only for the
        queries whose hits cover too few labels, up to the whole gallery.  The +1 is the
        runner-up needed for ``margin`` even when ``top_k`` is 1.
        """
        want = min(self.top_k + 1, self.n_labels)
        depth = min(self.count, SEARCH_DEPTH_FACTOR * (self.top_k + 1))
        ranked: list[list[tuple[str, float]]] = [[] for _ in range(len(feats))]
        todo = np.arange(len(feats))
        while len(todo):
            scores, ids = (self.gallery.search(feats[todo], depth, params=self.search_params)
                           if self.search_params else self.gallery.search(feats[todo], depth))
            scores = np.asarray(scores, dtype=np.float32)
            ids = np.asarray(ids, dtype=np.int64)
            valid = ids >= 0
            labels_flat = np.asarray(self.gallery.labels_of(ids[valid]))
            labels = np.empty(ids.shape, dtype=object)
            labels[valid] = labels_flat
            again = []
            for row, q in enumerate(todo):
                best: dict[str, float] = {}
                for lab, s, ok in zip(labels[row], scores[row], valid[row]):
                    if ok and lab not in best:  # hits come best first
                        best[str(lab)] = float(s)
                ranked[q] = sorted(best.items(), key=lambda kv: -kv[1])
                if len(best) < want and depth < self.count:
                    again.append(q)
            if not again:
                break
            todo = np.asarray(again)
            depth = min(self.count, depth * SEARCH_DEPTH_FACTOR)
        for q, labels_q in enumerate(ranked):
            if not labels_q:
                raise RetrieverError(f"gallery {self.gallery_name} returned no hits for query {q}")
        return ranked

    # --- images -> results ---------------------------------------------------------------------
    def classify(self, images: "Iterable[ImageInput] | ImageInput", batch_size: int = 32) -> list[Result]:
        """Paths, bytes or BGR uint8 arrays -> one :class:`Result` each, in order.

        Raises :class:`encoders.DecodeError` (naming the file) on the first unreadable input;
        use :meth:`classify_iter` to carry on past bad files.
        """
        items = _as_list(images)
        feats = self.encoder.encode(items, batch_size=batch_size)
        return self.classify_features(feats, [_describe_source(s) for s in items])

    def classify_one(self, image: "ImageInput") -> Result:
        """One image (path, bytes or BGR array) -> its :class:`Result`."""
        return self.classify([image])[0]

    def classify_iter(self, images: "Iterable[ImageInput]", batch_size: int = 32
                      ) -> Iterator[tuple[Any, "Result | DecodeError"]]:
        """Stream ``(input, Result or DecodeError)`` in input order; a bad file does not stop the rest.

        Decoding happens image by image so a failure is attributed to its file; the good images
        are still encoded in batches of ``batch_size``.
        """
        from encoders.decode import DecodeError

        pending: list[tuple[Any, "np.ndarray | DecodeError"]] = []

        def flush() -> Iterator[tuple[Any, "Result | DecodeError"]]:
            good = [(i, x) for i, (_, x) in enumerate(pending) if not isinstance(x, DecodeError)]
            results: dict[int, Result] = {}
            if good:
                feats = self.encoder.encode_batch(np.stack([x for _, x in good]))
                srcs = [_describe_source(pending[i][0]) for i, _ in good]
                for (i, _), res in zip(good, self.classify_features(feats, srcs)):
                    results[i] = res
            for i, (src, x) in enumerate(pending):
                yield src, (x if isinstance(x, DecodeError) else results[i])
            pending.clear()

        for src in images:
            try:
                pending.append((src, self.encoder.preprocess(src)))
            except DecodeError as exc:
                pending.append((src, exc))
            if len(pending) >= batch_size:
                yield from flush()
        if pending:
            yield from flush()

