"""Measure a gallery's own threshold table on the user's labelled captures.

Why: a model's shipped table was measured on the training project's benchmark; the FPR a user
actually gets depends on *their* register (how many types, how alike) and *their* captures.  This
scores labelled captures against the gallery exactly as the retriever will (same index, same
search), builds the exact TPR@FPR table (:mod:`retriever.metrics`) and stores it in the gallery
manifest, where it overrides the model's table.

LABELLED_DIR layout: one folder per registered type, the folder path relative to LABELLED_DIR
being the gallery label (``passport/de/scan1.jpg`` -> ``passport/de``), plus an optional
``unknown/`` folder of documents of types *not* in the gallery.  Unknown captures count as
negatives against every type (they are different-type pairs, the very false accepts a threshold
must guard against) and give the open-set false-accept rate.  The folder is walked by the reader
every command uses (:func:`encoders.inputs.walk_files`: sorted, hidden entries skipped, directory
links not followed); every page of a TIFF or PDF capture is a capture of its own, as in
``retriever run``.

Negative pairs available: ``known x (types - 1) + unknown x types``; an FPR of f needs at least
1/f of them (FPR 1e-4 -> 10,000).  Explicitly asked FPRs that cannot be measured are refused;
with the default FPRs the unmeasurable ones are left out of the table and listed.
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from encoders.decode import DOCUMENT_SUFFIXES  # the one list for every reader
from encoders.inputs import walk_files

from . import metrics as M
from . import openset as O
from .errors import CalibrationError
from .thresholds import scoring_for, scoring_of

__all__ = ["CalibrationError", "UNKNOWN_DIR", "EncodedBlock", "GalleryScorer", "calibrate_gallery",
           "calibration_from_scores", "iter_encoded", "scan_labelled_dir", "score_against_gallery"]

UNKNOWN_DIR = "unknown"
# Bound on the (queries x gallery items) search results held at once.
MAX_BLOCK = 4_000_000


class _GalleryLike(Protocol):
    manifest: dict[str, Any]

    def search(self, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def labels_of(self, ids: np.ndarray) -> np.ndarray: ...


# --------------------------------------------------------------------------------------------------
def scan_labelled_dir(labelled_dir: str | os.PathLike) -> tuple[list[tuple[Path, str]], list[Path]]:
    """(known captures as (path, label), unknown captures) below ``labelled_dir``, sorted.

    Hidden files and folders are skipped; images lying directly in the root are refused (they
    have no label).
    """
    root = Path(labelled_dir)
    if not root.is_dir():
        raise CalibrationError(f"{root}: not a directory (expected one folder per gallery label "
                               f"and an optional {UNKNOWN_DIR}/ folder)")
    known: list[tuple[Path, str]] = []
    unknown: list[Path] = []
    loose: list[Path] = []
    unreadable: list[str] = []
    for path, problem in walk_files(str(root)):
        if problem is not None:
            unreadable.append(f"{path}: {problem}")
            continue
        p = Path(path)
        rel = p.parent.relative_to(root)
        if rel == Path("."):
            loose.append(p)
        elif rel.parts[0] == UNKNOWN_DIR:
            unknown.append(p)
        else:
            known.append((p, rel.as_posix()))
    if unreadable:
        raise CalibrationError(f"{root}: cannot list every folder ({'; '.join(unreadable[:5])}); a calibration on "
                               "part of the captures would misstate the rates")
    if loose:
        raise CalibrationError(f"{root}: images directly in the directory have no label "
                               f"({', '.join(p.name for p in loose[:5])}{' ...' if len(loose) > 5 else ''}); "
                               f"put each in the folder named after its gallery label, or in {UNKNOWN_DIR}/")
    if not known and not unknown:
        raise CalibrationError(f"{root}: no images found ({', '.join(DOCUMENT_SUFFIXES)}); expected one folder "
                               f"per gallery label holding captures of that type, and optionally {UNKNOWN_DIR}/")
    return known, unknown


@dataclass
class EncodedBlock:
    """One batch of encoded pages: per row the index of its path, features, and what the gallery's
    scoring needs besides (local maps for one that re-ranks, page prints for one that verifies)."""
    owners: list[int]
    feats: np.ndarray
    maps: np.ndarray | None
    prints: list | None


def iter_encoded(encoder: Any, paths: Sequence[Path], batch_size: int = 32, local: bool = False,
                 prints: dict[str, Any] | None = None) -> Iterator[EncodedBlock]:
    """Every page of ``paths`` encoded, a batch at a time, so a caller that scores each block and lets it
    go holds one batch of page prints (~250 KB each), not every capture's.

    ``local``: the pages' local maps too; ``prints`` (a verifying gallery's manifest ``pages`` record):
    their prints, made as the retriever makes them.  Once a file or page fails, no more blocks come, but
    every file is still read; then :class:`CalibrationError` lists each unreadable file or page: a
    calibration needs all of its captures, and the user fixes them in one go.
    """
    from encoders.decode import DecodeError
    from encoders.local import Encoded
    from encoders.pages import iter_pages
    from encoders.preprocess import preprocess

    owners: list[int] = []
    buf: list[np.ndarray] = []
    made: list[Any] = []
    bad: list[str] = []
    target = tuple(encoder.input_size)
    if prints is not None:  # decoded as Retriever.decode_size decodes for a verifying gallery
        from encoders import pageprint

        target = pageprint.decode_hw(target, int(prints["side"]))

    def block() -> EncodedBlock:
        out = Encoded(encoder, local)
        out.add(np.stack(buf))
        feats, maps = out.result()
        done = EncodedBlock(list(owners), feats, maps, list(made) if prints is not None else None)
        owners.clear()
        buf.clear()
        made.clear()
        return done

    for i, path in enumerate(paths):
        for page, img in iter_pages(str(path), target):
            if isinstance(img, DecodeError):
                bad.append(str(img))
                continue
            if prints is not None:
                try:
                    pp = pageprint.of_image(img, int(prints["keypoints"]), keep_gray=True, side=int(prints["side"]))
                except ValueError as exc:  # a page too small to print
                    bad.append(f"{path} (page {page}): {exc}")
                    continue
            if bad:  # once one capture is bad nothing is scored: keep reading, stop encoding
                continue
            owners.append(i)
            buf.append(preprocess(img, encoder.contract))
            if prints is not None:
                made.append(pp)
            if len(buf) >= batch_size:
                yield block()
    if bad:
        shown = "\n".join(f"  - {b}" for b in bad[:20]) + (f"\n  ... ({len(bad)} in all)" if len(bad) > 20 else "")
        raise CalibrationError(f"cannot read {len(bad)} capture(s) or page(s); nothing was measured:\n{shown}")
    if buf:
        yield block()


def _check_data(root: str, known_labels: Sequence[str], n_unknown: int, types: np.ndarray,
                fprs: Sequence[float] | None) -> list[float]:
    """Refuse before encoding anything when the data cannot give what was asked; the FPRs to report."""
    type_set = set(types.tolist())
    if UNKNOWN_DIR in type_set:
        raise CalibrationError(f"the gallery has a label named {UNKNOWN_DIR!r}, which LABELLED_DIR reserves for "
                               "documents of unregistered types; rename that label to calibrate")
    foreign = sorted(set(known_labels) - type_set)
    if foreign:
        shown = ", ".join(sorted(type_set)[:20]) + (" ..." if len(type_set) > 20 else "")
        raise CalibrationError(
            f"{root}: {len(foreign)} folder(s) not named after a gallery label: "
            f"{', '.join(repr(f) for f in foreign[:20])}{' ...' if len(foreign) > 20 else ''}; the gallery has "
            f"{len(type_set)} labels: {shown}. Rename the folders to gallery labels, or move captures of "
            f"unregistered types into {UNKNOWN_DIR}/")
    n_known = len(known_labels)
    if n_known == 0:
        raise CalibrationError(f"{root}: no captures of registered types (only {UNKNOWN_DIR}/): a TPR needs "
                               "positive pairs; add folders named after gallery labels")
    n_neg = n_known * (len(types) - 1) + n_unknown * len(types)
    how = (f"{n_known:,} captures of registered types x {len(types) - 1:,} other types + "
           f"{n_unknown:,} unknown captures x {len(types):,} types")
    wanted = list(M.DEFAULT_FPRS if fprs is None else fprs)
    for f in wanted:
        if not 0.0 < f < 1.0:
            raise CalibrationError(f"FPR must be in (0, 1), got {f!r}")
    short = [f for f in wanted if not M.is_measurable(f, n_neg)]
    if fprs is not None and short:
        need = "; ".join(f"FPR {f:g} needs at least {M.negatives_needed(f):,}" for f in short)
        raise CalibrationError(
            f"{root}: too little data for the FPRs asked: it gives {n_neg:,} negative pairs ({how}); {need}. "
            f"Add captures (more per type, more types' captures, or unregistered documents in {UNKNOWN_DIR}/), "
            "or ask for larger FPRs")
    if len(short) == len(wanted):
        raise CalibrationError(
            f"{root}: too little data: it gives {n_neg:,} negative pairs ({how}); even FPR {max(wanted):g} needs "
            f"{M.negatives_needed(max(wanted)):,}. Add captures or unregistered documents in {UNKNOWN_DIR}/")
    return wanted


class GalleryScorer:
    """Per-type best scores of captures, from the gallery's own search (what the retriever sees),
    gathered block by block: a caller may feed captures as it encodes them and let each block go.

    Searches each capture against all gallery items (k = count) in blocks of at most ``max_block``
    results; a type an approximate index does not return scores -inf (the retriever could not return it
    either).  ``local``: the captures' local maps, for a gallery that re-ranks (its search then re-scores
    the top candidates); ``pages``: their page prints, for a gallery that verifies.
    """

    def __init__(self, gallery: _GalleryLike, types: Sequence[str], max_block: int = MAX_BLOCK) -> None:
        self.gallery = gallery
        self.types = np.asarray(sorted(types))
        self.count = int(gallery.manifest["count"])
        self.step = max(1, max_block // max(1, self.count))
        self._acc = M.ScoreAccumulator(self.types, n_exemplars=self.count, unknown_as_negatives=True)
        self._loo: list[np.ndarray] = []  # (m, 2) best and second other type, searched without the own type

    def _type_scores(self, feats: np.ndarray, local: np.ndarray | None, pages: Sequence[Any] | None):
        for i in range(0, len(feats), self.step):
            kw: dict[str, Any] = {} if local is None else {"local": local[i:i + self.step]}
            if pages is not None:
                kw["pages"] = pages[i:i + self.step]
            scores, ids = self.gallery.search(feats[i:i + self.step], self.count, **kw)
            valid = ids >= 0
            rows = np.nonzero(valid)[0]
            labels = np.asarray(self.gallery.labels_of(ids[valid])).astype(str)
            out = np.full((len(scores), len(self.types)), -np.inf, dtype=np.float32)
            np.maximum.at(out, (rows, np.searchsorted(self.types, labels)), scores[valid].astype(np.float32))
            yield i, out

    def add_known(self, feats: np.ndarray, labels: Sequence[str], local: np.ndarray | None = None,
                  pages: Sequence[Any] | None = None) -> None:
        """Captures of registered types, ``labels`` their gallery labels."""
        feats = np.asarray(feats, dtype=np.float32)
        kl = np.asarray(labels).astype(str)
        true_idx = np.searchsorted(self.types, kl)
        for i, block in self._type_scores(feats, local, pages):
            self._acc.add_known(block, true_idx[i:i + len(block)])
        if local is not None and len(self.types) >= 2 and len(feats):
            # leave one type out by searching without it: with re-ranking, the own type's exemplar among the
            # candidates would move the others' scores, so dropping it from this ranking is not the same
            left = O.ranked_labels(self.gallery, feats, 2, self.count, len(self.types), local=local,
                                   exclude=[str(x) for x in kl], pages=pages)
            self._loo.append(np.asarray([[r[0][1] if r else np.nan, r[1][1] if len(r) > 1 else np.nan]
                                         for r in left], dtype=np.float32).reshape(-1, 2))

    def add_unknown(self, feats: np.ndarray, local: np.ndarray | None = None,
                    pages: Sequence[Any] | None = None) -> None:
        """Captures of types not in the gallery."""
        for _, block in self._type_scores(np.asarray(feats, dtype=np.float32), local, pages):
            self._acc.add_unknown(block)

    def finish(self) -> M.ScoreSets:
        sets = self._acc.finish()
        if self._loo:
            loo = np.concatenate(self._loo)
            sets.known_loo_best, sets.known_loo_second = loo[:, 0].copy(), loo[:, 1].copy()
        return sets


def score_against_gallery(gallery: _GalleryLike, types: Sequence[str], known_feats: np.ndarray,
                          known_labels: Sequence[str], unknown_feats: np.ndarray | None = None,
                          max_block: int = MAX_BLOCK, known_local: np.ndarray | None = None,
                          unknown_local: np.ndarray | None = None, known_pages: Sequence[Any] | None = None,
                          unknown_pages: Sequence[Any] | None = None) -> M.ScoreSets:
    """:class:`GalleryScorer` over captures held in memory at once."""
    scorer = GalleryScorer(gallery, types, max_block)
    scorer.add_known(known_feats, known_labels, known_local, known_pages)
    if unknown_feats is not None and len(unknown_feats):
        scorer.add_unknown(unknown_feats, unknown_local, unknown_pages)
    return scorer.finish()


def open_set_from_scores(sets: M.ScoreSets, source: str, fpirs: Sequence[float] = O.DEFAULT_FPIRS
                         ) -> dict[str, Any]:
    """The open-set part of a user calibration: DIR on the labelled captures of registered types, FPIR
    on the non-mated captures: the ``unknown/`` folder plus every labelled capture scored with its own
    type left out (an unregistered look-alike of this register, as the self-calibration uses)."""
    n_types = len(sets.types)
    rule = O.DEFAULT_RULE if n_types >= 3 else O.RULES["cosine"]
    scores = O.scores_from_sets(sets, unknowns=True, leave_own_out=n_types >= 2)
    rows = O.dir_table(scores, rule, fpirs)
    for r in rows:
        r["source"] = source
        r["origin"] = "user calibration"
    return {"status": "measured" if any(r["measurable"] for r in rows) else "not measurable",
            "reason": None if any(r["measurable"] for r in rows) else
            f"{scores.n_unknown} non-mated captures: FPIR {max(fpirs):g} needs >= {M.negatives_needed(max(fpirs))}",
            "rule": rule.to_dict(), "table": rows, "n_known": scores.n_known,
            "n_unknown": int(len(sets.unknown_best)), "n_leave_one_out": scores.n_unknown - int(len(sets.unknown_best)),
            "source": source}


def merge_open_set(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """Keep the rows of an earlier user calibration that the new data cannot measure (each row keeps
    its own source): calibrating again with a smaller set never throws measured rows away."""
    if not old or not old.get("table"):
        return new
    have = {round(r["fpir"], 12) for r in new["table"] if r.get("measurable")}
    kept = [dict(r, rule=r.get("rule") or old.get("rule")) for r in old["table"]
            if r.get("measurable") and round(r["fpir"], 12) not in have]
    if not kept:
        return new
    rows = [r for r in new["table"] if r.get("measurable")] + kept
    missing = [r for r in new["table"] if not r.get("measurable") and round(r["fpir"], 12) not in
               {round(k["fpir"], 12) for k in kept}]
    out = dict(new)
    out["table"] = sorted(rows + missing, key=lambda r: r["fpir"])
    out["merged_rows"] = [r["fpir"] for r in kept]
    if out.get("status") != "measured":
        out["status"], out["reason"] = "measured", None
    return out


def calibration_from_scores(sets: M.ScoreSets, fprs: Sequence[float], source: str) -> dict[str, Any]:
    """The calibration record stored in the gallery manifest (JSON-serialisable).

    ``table`` holds only the measurable rows (what the retriever may use); the others are listed
    under ``not_measurable`` with the number of negatives they need, and shown as n/a in
    ``table_markdown``.
    """
    res = M.summarise(sets, fprs)
    rs = res["register_size"]
    header = (f"Calibration ({source}): {res['n_pos']:,} positive / {res['n_neg']:,} negative pairs from "
              f"{res['n_known_queries']:,} captures of registered types and {res['n_unknown_queries']:,} unknown "
              f"captures; register {rs['types']:,} types ({rs['exemplars']:,} exemplars); AUROC {res['auroc']:.4f}, "
              f"top-1 {res['top1_accuracy']:.4f}. Accept iff cosine >= threshold.")
    return {
        "table": [r for r in res["table"] if r["measurable"]],
        "not_measurable": [{"fpr": r["fpr"], "negatives_needed": M.negatives_needed(r["fpr"])}
                           for r in res["table"] if not r["measurable"]],
        "source": source,
        "n_pos": res["n_pos"],
        "n_neg": res["n_neg"],
        "n_known_queries": res["n_known_queries"],
        "n_unknown_queries": res["n_unknown_queries"],
        "register_size": res["register_size"],
        "negatives": "captures x other registered types, plus unknown captures x all types",
        "auroc": res["auroc"],
        "top1_accuracy": res["top1_accuracy"],
        "identification": res["identification"]["rows"],
        "open_set": open_set_from_scores(sets, source),
        "table_markdown": header + "\n\n" + M.markdown_table(res),
    }


def calibrate_gallery(gallery_path: str, labelled_dir: str, encoder: Any,
                      fprs: Sequence[float] | None = None, batch_size: int = 32) -> dict[str, Any]:
    """Measure the TPR@FPR table of ``gallery_path`` on ``labelled_dir`` and store it in its manifest.

    ``fprs=None`` measures the default rows (1e-5 .. 1e-1) that the data allows and lists the
    others under ``not_measurable``; explicit ``fprs`` are all required, else CalibrationError.
    Returns the stored record (``table``, ``source``, ``n_pos``, ``n_neg``, ``register_size``,
    ``table_markdown``, ...).  ``batch_size``: captures encoded, and then scored, at a time.
    """
    from indexer.gallery import Gallery

    known, unknown = scan_labelled_dir(labelled_dir)
    g = Gallery.open(gallery_path, encoder)
    types = np.unique(np.asarray(g.items.column("label").to_pylist(), dtype=str))
    if len(types) == 0:
        raise CalibrationError(f"{gallery_path}: the gallery is empty; add register exemplars first")
    wanted = _check_data(str(labelled_dir), [lab for _, lab in known], len(unknown), types,
                         None if fprs is None else list(fprs))
    scoring = scoring_for(encoder, g)
    # captures are scored block by block as they are encoded: a verifying gallery's prints (~250 KB a page)
    # are let go after their block, so memory does not grow with the number of captures
    scorer = GalleryScorer(g, types)
    paths = [p for p, _ in known] + unknown
    for b in iter_encoded(encoder, paths, batch_size, local=scoring in ("reranked", "verified"),
                          prints=g.manifest["pages"] if scoring == "verified" else None):
        is_known = np.asarray(b.owners, dtype=np.int64) < len(known)
        for mask, kind in ((is_known, "known"), (~is_known, "unknown")):
            if not mask.any():
                continue
            local = None if b.maps is None else b.maps[mask]
            pages = None if b.prints is None else [x for x, m in zip(b.prints, mask) if m]
            if kind == "known":
                scorer.add_known(b.feats[mask], [known[i][1] for i, m in zip(b.owners, mask) if m], local, pages)
            else:
                scorer.add_unknown(b.feats[mask], local, pages)
        del b
    sets = scorer.finish()
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = calibration_from_scores(sets, wanted, f"user calibration {Path(labelled_dir).resolve()} {date}")
    record["encoder"] = {"name": encoder.name, "fingerprint": encoder.fingerprint}
    record["created_at"] = date
    record["scoring"] = scoring  # the score its thresholds are for (retriever.thresholds.scoring_of)
    old = g.calibration or {}
    same_model = (old.get("encoder") or {}).get("fingerprint") in (None, encoder.fingerprint) and \
        scoring_of(old) == scoring
    record["open_set"] = merge_open_set(record["open_set"], old.get("open_set") if same_model else None)
    record["open_set"]["encoder"] = record["encoder"]
    os_ = record["open_set"]
    record["table_markdown"] += "\n\n" + O.markdown_dir_table(
        os_["table"], f"Open set ({os_['n_known']:,} captures of registered types; {os_['n_unknown']:,} unknown "
                      f"captures + {os_['n_leave_one_out']:,} leave-one-type-out; rule {os_['rule']['name']}):")
    g.set_calibration(record)
    return record
