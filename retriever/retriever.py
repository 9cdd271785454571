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

from .defaults import BATCH_SIZE, TOP_K
from .errors import RetrieverError
from .openset import ranked_labels
from .thresholds import (OperatingPoint, ThresholdError, ThresholdTable, check_explicit_threshold,
                         choose_operating_point, scoring_for, to_reference_score)

if TYPE_CHECKING:
    from encoders import Encoder
    from encoders.decode import DecodeError, ImageInput

__all__ = ["Result", "Retriever", "RetrieverError"]


@dataclass
class Result:
    """One classification.

    ``label`` is always the best-scoring label, even when rejected: check ``accepted``.
    ``score`` is the query's score against that label's best exemplar: on a gallery that re-ranks by
    local maps (the default model's), the cosine moved by the re-ranking (it may exceed 1), else the
    cosine in [-1, 1], whose reference-project form is ``(score + 1) / 2`` (:attr:`reference_score`).
    ``top_k`` lists distinct labels with their best-exemplar cosine, best first; ``margin`` is
    best minus runner-up label (None when the gallery has a single label).
    ``accepted`` is ``decision_score >= threshold``, where ``decision_score`` is what ``rule``
    makes of the score and the margin (the score itself for the ``cosine`` rule).
    ``page`` is the page of a multi-page input (TIFF, PDF: one result per page), 0 otherwise.
    ``error`` says why an input (or page) could not be classified; such a result has no label
    (``""``), a NaN score and is never accepted.
    """

    label: str
    score: float
    accepted: bool
    threshold: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    margin: float | None = None
    source: str | None = None
    decision_score: float | None = None
    rule: str = "cosine"
    top_k_ids: list[int] = field(default_factory=list)  # the best exemplar of each top_k label (item id)
    top_k_sources: list[str | None] = field(default_factory=list)  # ... and the file it was enrolled from
    page: int = 0
    error: str | None = None

    @classmethod
    def failed(cls, source: str | None, page: int, reason: str, threshold: float, rule: str) -> "Result":
        """The result of an input that could not be read: why, and never accepted."""
        return cls(label="", score=float("nan"), accepted=False, threshold=threshold, source=source, page=page,
                   error=reason, rule=rule)

    @property
    def reference_score(self) -> float:
        """The score on the reference project's ``(cos + 1) / 2`` scale, in [0, 1]."""
        return to_reference_score(self.score)

    @property
    def runner_up(self) -> tuple[str, float] | None:
        return self.top_k[1] if len(self.top_k) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain floats, top_k as a list of {"label", "score", "id", "source"} (the best
        exemplar of that label: its gallery item id and the file it was enrolled from)."""
        if self.error is not None:
            return {"source": self.source, "page": self.page, "error": self.error}
        ids = self.top_k_ids or [None] * len(self.top_k)
        srcs = self.top_k_sources or [None] * len(self.top_k)
        return {
            "source": self.source,
            "page": self.page,
            "label": self.label,
            "score": round(float(self.score), 6),
            "accepted": bool(self.accepted),
            "threshold": round(float(self.threshold), 6),
            "margin": None if self.margin is None else round(float(self.margin), 6),
            "decision_score": None if self.decision_score is None else round(float(self.decision_score), 6),
            "rule": self.rule,
            "top_k": [{"label": lab, "score": round(float(s), 6), "id": None if i is None or i < 0 else int(i),
                       "source": src} for (lab, s), i, src in zip(self.top_k, ids, srcs)],
            "error": None,
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
    The operating point (give at most one; :func:`retriever.thresholds.choose_operating_point`):

    * ``fpir`` (default 1e-2): the share of documents of *unregistered* types you accept to let
      through, read from the gallery's own open-set table (your ``retriever calibrate`` rows, then
      the gallery's self-calibration), with its decision rule (cosine + margin to the runner-up);
    * ``fpr``: a row of the pair table (the reference project's meaning: the share of
      *different-type pairs* above the threshold), decided on the cosine alone;
    * ``threshold``: an explicit cosine in [-1, 1] (a reference-project (cos+1)/2 threshold ``t``
      is cosine ``2*t - 1``).

    Threads: one retriever may serve many threads at once (``classify``, ``classify_iter``,
    ``classify_features``; tested against separate instances): the encoder's ONNX Runtime session and the
    FAISS search are re-entrant and a call keeps no state on the object.  :meth:`reload` replaces the
    gallery and threshold, so call it while no other thread classifies, or swap whole retrievers the way
    ``retriever serve`` does.

    ``operating_point`` says what was chosen and where it comes from (pass one to reuse a decision
    made elsewhere, as bulk workers do).  ``search_params``: per-query index parameters for large
    approximate galleries.
    ``top_k``: how many distinct labels each result lists.
    ``search_params``: per-query index parameters for large approximate galleries (``{"nprobe": 16}``,
    ``{"efSearch": 256}``, ``{"rerank": 8}``); ignored by exact (flat) galleries.
    ``labels``: the labels every search is restricted to (a workflow that knows the document is one
    of a few types); each ``classify*`` call may give its own.  The restriction is an ID selector
    inside the index search, so top-k, margin and runner-up are those among the allowed labels.
    """

    def __init__(self, gallery: Any, encoder: "Encoder | None" = None, fpr: float | None = None,
                 threshold: float | None = None, top_k: int = TOP_K, search_params: dict | None = None,
                 fpir: float | None = None, operating_point: OperatingPoint | None = None,
                 labels: Sequence[str] | None = None) -> None:
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
        if threshold is not None:  # an explicit threshold wins, as it always did
            fpr = fpir = None
        if fpr is not None and fpir is not None:
            raise RetrieverError("give one operating point: fpir (open set) or fpr (pair table), not both")
        self._asked = {"fpir": fpir, "fpr": fpr, "threshold": threshold}
        self._fixed_op = operating_point  # as decided elsewhere (a bulk job's driver): used as is
        self._configure()
        self.labels: tuple[str, ...] | None = None
        if labels is not None:
            self.labels = tuple(sorted({str(x) for x in ([labels] if isinstance(labels, str) else labels)}))
            self._subset(self.labels)  # refuse unknown labels now, not at the first query

    def _configure(self) -> None:
        """Sizes and threshold from the gallery's current state (again after :meth:`reload`)."""
        self._label_counts: dict[str, int] | None = None
        manifest = getattr(self.gallery, "manifest", None) or {}  # may be a copy: read it once
        self.count = int(manifest["count"]) if "count" in manifest else self._count_items()
        if self.count <= 0:
            raise RetrieverError(f"gallery {self.gallery_name} is empty; add exemplars first "
                                 "(`indexer add` or Gallery.add)")
        self.n_labels = int(manifest["labels"]) if "labels" in manifest else self._count_labels()
        self.scoring = scoring_for(self.encoder, self.gallery)
        self.table = ThresholdTable.resolve(self.encoder.contract, getattr(self.gallery, "calibration", None),
                                            gallery=f"gallery {self.gallery_name}", scoring=self.scoring)
        a = self._asked
        if a["threshold"] is not None:
            try:
                check_explicit_threshold(float(a["threshold"]), self.scoring)
            except ThresholdError as exc:
                raise RetrieverError(str(exc)) from None
        op = self._fixed_op or choose_operating_point(
            self.encoder.contract, getattr(self.gallery, "calibration", None),
            getattr(self.gallery, "self_calibration", None), self.n_labels, fpir=a["fpir"], fpr=a["fpr"],
            threshold=a["threshold"], gallery=f"gallery {self.gallery_name}", fingerprint=self.encoder.fingerprint,
            scoring=self.scoring)
        self.operating_point: OperatingPoint = op
        self.rule = op.rule
        self.threshold = float(op.threshold)
        self.fpr: float | None = op.target if op.kind == "fpr" else None
        self.fpir: float | None = op.target if op.kind in ("fpir", "fpir-fallback") else None
        self.threshold_origin = op.describe()

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
    def _subset(self, labels: Sequence[str]) -> tuple[int, int]:
        """(exemplars, labels) of an allowed-label subset; unknown labels are refused by name."""
        if self._label_counts is None:  # once per gallery state (reset by reload), not once per batch
            counts_of = getattr(self.gallery, "label_counts", None)
            if counts_of is None:
                raise RetrieverError(f"gallery {self.gallery_name} cannot filter by label")
            self._label_counts = counts_of()
        counts = self._label_counts
        wanted = {str(x) for x in labels}
        if not wanted:
            raise RetrieverError("an empty label filter allows nothing; give at least one label")
        missing = sorted(wanted - set(counts))
        if missing:
            raise RetrieverError(f"gallery {self.gallery_name} has no label(s) {missing[:10]}"
                                 f"{' ...' if len(missing) > 10 else ''}")
        return sum(counts[x] for x in wanted), len(wanted)

    @property
    def reranks(self) -> bool:
        """Whether searches re-rank by local maps (the model has them and the gallery holds its
        exemplars'): then :meth:`classify_features` needs the queries' maps too."""
        return self.scoring in ("reranked", "verified")

    @property
    def verifies(self) -> bool:
        """Whether searches verify their top candidates by registration (the gallery holds its
        exemplars' page prints): then :meth:`classify_features` needs the queries' prints too."""
        return self.scoring == "verified"

    @property
    def decode_size(self) -> tuple[int, int]:
        """(h, w) a page is decoded at (the reduced JPEG decode's target): the encoder's input, or twice
        the page print's side when the gallery verifies (the print's keypoints are found there)."""
        target = tuple(int(x) for x in self.encoder.contract.input_size)
        if not self.verifies:
            return target
        from encoders import pageprint

        return pageprint.decode_hw(target, int(self.gallery.manifest["pages"]["side"]))

    def page_print(self, img: np.ndarray) -> Any:
        """The page print of one decoded page (BGR), as this retriever's gallery verifies with."""
        from encoders import pageprint

        rec = self.gallery.manifest["pages"]
        return pageprint.of_image(img, int(rec["keypoints"]), keep_gray=True, side=int(rec["side"]))

    def classify_features(self, feats: np.ndarray, sources: Sequence[str | None] | None = None,
                          labels: Sequence[str] | None = None, local: np.ndarray | None = None,
                          pages: Sequence[Any] | None = None) -> list[Result]:
        """``(n, dim)`` L2-normalised features from this retriever's encoder -> results.

        For callers that already ran the encoder (bulk jobs); gives exactly what :meth:`classify`
        gives for the same images.  ``labels`` overrides the retriever's label filter for this call.
        ``local``: the queries' local maps (``encoder.encode_batch(x, local=True)[1]``), required when
        :attr:`reranks` (the thresholds in force were measured on re-ranked scores).  ``pages``: the
        queries' page prints (:meth:`page_print`), required when :attr:`verifies`.
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
        local = self._per_row(local, n, self.reranks, "local maps", "re-ranks by local maps", "re-ranked",
                              "local=, from encoder.encode_batch(x, local=True)")
        pages = self._per_row(pages, n, self.verifies, "page prints", "verifies by registration", "verified",
                              "pages=, from Retriever.page_print(image)")
        feats = np.ascontiguousarray(feats)
        best_ids: list[dict[str, int]] = []
        ranked = self._ranked_labels(feats, best_ids, self.labels if labels is None else labels, local, pages)
        out = []
        rule = self.rule
        sources_of = getattr(self.gallery, "sources_of", None)
        tops = [row[:self.top_k] for row in ranked]
        flat_ids = [best_ids[i].get(lab, -1) for i, top in enumerate(tops) for lab, _ in top]
        flat_src = sources_of(flat_ids) if sources_of is not None else [None] * len(flat_ids)  # one lookup
        at = 0
        for i, row in enumerate(ranked):
            top = tops[i]
            best_label, best = top[0]
            margin = best - row[1][1] if len(row) > 1 else None
            z = float(rule.score(best, row[1][1])) if (rule.uses_margin and margin is not None) \
                else float(rule.cosine_weight * best)
            out.append(Result(label=best_label, score=best, accepted=bool(z >= self.threshold),
                              threshold=self.threshold, top_k=top, margin=margin,
                              source=None if sources is None else sources[i], decision_score=z, rule=rule.name,
                              top_k_ids=flat_ids[at:at + len(top)], top_k_sources=flat_src[at:at + len(top)]))
            at += len(top)
        return out

    def _per_row(self, values: Any, n: int, needed: bool, what: str, does: str, scores: str, how: str) -> Any:
        """Per-query inputs the gallery's scoring needs (local maps, page prints): checked, or None when the
        gallery does not use them."""
        if not needed:
            return None
        if values is None:
            raise RetrieverError(f"gallery {self.gallery_name} {does} and its thresholds are for {scores} scores: "
                                 f"pass the queries' {what} ({how})")
        if len(values) != n:
            raise RetrieverError(f"{len(values)} {what} for {n} feature rows")
        return values

    def _ranked_labels(self, feats: np.ndarray, best_ids: list[dict[str, int]] | None = None,
                       labels: Sequence[str] | None = None, local: np.ndarray | None = None,
                       pages: Sequence[Any] | None = None) -> list[list[tuple[str, float]]]:
        """Per query: distinct labels by best-exemplar score, at least ``top_k + 1`` when possible
        (the +1 is the runner-up needed for ``margin`` even when ``top_k`` is 1)."""
        count, n_labels = (self.count, self.n_labels) if labels is None else self._subset(labels)
        ranked = ranked_labels(self.gallery, feats, self.top_k + 1, count, n_labels, self.search_params,
                               best_ids, None if labels is None else sorted({str(x) for x in labels}), local,
                               pages=pages)
        for q, labels_q in enumerate(ranked):
            if not labels_q:
                raise RetrieverError(f"gallery {self.gallery_name} returned no hits for query {q}")
        return ranked

    # --- images -> results ---------------------------------------------------------------------
    def classify(self, images: "Iterable[ImageInput] | ImageInput", batch_size: int = BATCH_SIZE,
                 labels: Sequence[str] | None = None) -> list[Result]:
        """Paths, bytes or BGR uint8 arrays -> :class:`Result` s in input order: one per page (a
        multi-page TIFF or PDF gives one per page, with ``page`` set; anything else one).

        An input that cannot be read gives a result with ``error`` set (naming the file and what is
        wrong) instead of stopping the others, as `retriever classify` and `retriever run` do.
        """
        return [res if isinstance(res, Result) else
                Result.failed(_describe_source(src), int(getattr(res, "page", 0) or 0), _reason(res), self.threshold,
                              self.rule.name)
                for src, res in self.classify_iter(_as_list(images), batch_size=batch_size, labels=labels)]

    def classify_one(self, image: "ImageInput", labels: Sequence[str] | None = None) -> Result:
        """One single-page image (path, bytes or BGR array) -> its :class:`Result` (the first page's
        for a multi-page file; :meth:`classify` gives every page)."""
        return self.classify([image], labels=labels)[0]

    def _pages(self, src: Any) -> Iterator[tuple[int, "np.ndarray | DecodeError", Any]]:
        """The pages of one input, each preprocessed (with its page print when the gallery verifies:
        the page is then decoded at twice the print's side) or the reason it cannot be."""
        from encoders.decode import DecodeError

        from encoders.pages import iter_pages, iter_pages_of

        target = self.decode_size
        if isinstance(src, (str, os.PathLike)):
            pages = iter_pages(os.fspath(src), target)
        elif isinstance(src, (bytes, bytearray, memoryview)):
            pages = iter_pages_of(bytes(src), "<bytes>", target)
        else:
            pages = iter([(0, src)])
        for page, img in pages:
            if isinstance(img, DecodeError):
                yield page, _on_page(img, page), None
                continue
            try:
                x = self.encoder.preprocess(img)
            except DecodeError as exc:
                yield page, _on_page(exc, page), None
                continue
            if not self.verifies:
                yield page, x, None
                continue
            try:
                yield page, x, self.page_print(img)
            except ValueError as exc:  # a page too small to print
                yield page, _on_page(DecodeError(_describe_source(src), str(exc)), page), None

    def classify_iter(self, images: "Iterable[ImageInput]", batch_size: int = BATCH_SIZE,
                      labels: Sequence[str] | None = None) -> Iterator[tuple[Any, "Result | DecodeError"]]:
        """Stream ``(input, Result or DecodeError)`` in input order, one per page; a bad file (or
        page) does not stop the rest.

        Decoding happens input by input so a failure is attributed to its file (and page: the
        error's ``page`` attribute); the good pages are still encoded in batches of ``batch_size``.
        """
        from encoders.decode import DecodeError

        pending: list[tuple[Any, int, "np.ndarray | DecodeError", Any]] = []

        def flush() -> Iterator[tuple[Any, "Result | DecodeError"]]:
            good = [(i, x) for i, (_, _, x, _) in enumerate(pending) if not isinstance(x, DecodeError)]
            results: dict[int, Result] = {}
            if good:
                x = np.stack([x for _, x in good])
                feats, maps = self.encoder.encode_batch(x, local=True) if self.reranks else \
                    (self.encoder.encode_batch(x), None)
                srcs = [_describe_source(pending[i][0]) for i, _ in good]
                prints = [pending[i][3] for i, _ in good] if self.verifies else None
                for (i, _), res in zip(good, self.classify_features(feats, srcs, labels=labels, local=maps,
                                                                     pages=prints)):
                    res.page = pending[i][1]
                    results[i] = res
            for i, (src, _, x, _) in enumerate(pending):
                yield src, (x if isinstance(x, DecodeError) else results[i])
            pending.clear()

        for src in images:
            for page, x, pp in self._pages(src):
                pending.append((src, page, x, pp))
                if len(pending) >= batch_size:
                    yield from flush()
        if pending:
            yield from flush()


def _on_page(exc: "DecodeError", page: int) -> "DecodeError":
    exc.page = page  # type: ignore[attr-defined]
    return exc


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or str(exc)
