"""Self-calibration: a gallery measures its own open-set operating table, with no labelled data.

Why: the share of unknown documents a threshold lets through (FPIR) is a property of the
*register*: a register of one manual's pages or of one issuer's cards is full of look-alike types,
a mixed one is not, so a table measured elsewhere does not hold (README, "Choosing an operating
point").  Leave-one-type-out scoring turns the register into its own test of look-alikes:

* **probes**: simulated captures (:mod:`encoders.capture`, preset ``train``) of one exemplar per
  type, encoded with the gallery's model and kept in the gallery (``probes-N.parquet``);
* **mated scores**: each probe against the whole gallery (best label right? its cosine, margin);
* **non-mated scores**: the same probe against the gallery *without its own type*, which is how a
  document of an unregistered look-alike type scores against this register.

The FPIR -> threshold -> expected DIR table is read from them exactly (retriever.openset), stored
in the manifest with its provenance and refreshed on every write (add, remove, compact): new
exemplars cost ``captures_per_type`` simulated captures each (only for types not yet probed),
every write re-scores the stored probes (one search of <= ``max_types * max_per_type`` rows).

Why preset ``train`` and not the harsher ``eval``: on real documents the ``eval`` captures score
lower than real ones, and thresholds learnt on them let ~3x the target FPIR through; ``train``
captures landed at 1.3 / 4.7 / 9.3 % for targets 1 / 5 / 10 % on a real page register (issue 12),
and are conservative on the benchmark (its queries are ``eval`` captures; README numbers).
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["ENV_SWITCH", "Probes", "Settings", "captures_per_type", "enabled_by_default", "look_alikes", "make_probes",
           "measure"]

VERSION = 1
# Set to 0 to build and update galleries without self-calibration (tests, bulk rebuilds); a gallery
# records whether it is self-calibrated, and later writes follow that record.
ENV_SWITCH = "DOCRETRIEVER_SELF_CALIBRATE"
# Exemplars are decoded at reduced resolution: captures are 300-1000 px wide.
PROBE_DECODE_HW = (800, 800)


def enabled_by_default() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """How many probes, of which capture model.  ``min_probes`` makes FPIR 1e-2 measurable (it needs
    100 non-mated probes) on any gallery of >= 2 types; ``max_types`` bounds the cost of large ones
    (types above it are not probed: the table then rests on a sample of the register, said so)."""

    preset: str = "train"
    min_probes: int = 240
    min_per_type: int = 4
    max_per_type: int = 64
    max_types: int = 2000

    def __post_init__(self) -> None:
        from encoders.capture import PRESETS

        if self.preset not in PRESETS:
            raise ValueError(f"unknown capture preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if not 1 <= self.min_per_type <= self.max_per_type:
            raise ValueError(f"need 1 <= min_per_type <= max_per_type, got {self.min_per_type}, {self.max_per_type}")
        if self.max_types < 2 or self.min_probes < 0:
            raise ValueError("max_types must be >= 2 and min_probes >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Settings":
        d = dict(d or {})
        known = {k: d[k] for k in ("preset", "min_probes", "min_per_type", "max_per_type", "max_types") if k in d}
        return cls(**known)


def captures_per_type(n_types: int, s: Settings) -> int:
    """Captures per probed type: enough for ``min_probes`` in all, within [min_per_type, max_per_type]."""
    n = max(1, min(int(n_types), s.max_types))
    return int(min(s.max_per_type, max(s.min_per_type, math.ceil(s.min_probes / n))))


# --------------------------------------------------------------------------------------------------
@dataclass
class Probes:
    """Encoded simulated captures: the exemplar id each was made from, its label, its feature."""

    item_ids: np.ndarray                 # (n,) int64
    labels: np.ndarray                   # (n,) object (str)
    feats: np.ndarray                    # (n, dim) float32, unit rows
    problems: list[str] = field(default_factory=list)  # exemplars that could not be probed, and why
    seconds: float = 0.0                 # time spent simulating and encoding them
    keys: list[str] = field(default_factory=list)  # before ids exist: the image sha256 each item_id indexes
    local: np.ndarray | None = None      # (n, cells, C) float16 local maps, for a gallery that re-ranks
    pages: np.ndarray | None = None      # (n,) object: each capture's grey page as PNG bytes (its print is made
                                         # again when needed: encoders.pageprint.StoredCapture), for one that verifies
    verified: np.ndarray | None = None   # (n, MEMO_SLOTS, 2k) float64: candidate ids (-1: none) and their deltas
                                         # from the last measurement, so a write re-verifies only what changed

    @classmethod
    def empty(cls, dim: int) -> "Probes":
        return cls(np.zeros(0, np.int64), np.zeros(0, object), np.zeros((0, dim), np.float32))

    def __len__(self) -> int:
        return int(len(self.item_ids))

    @property
    def types(self) -> set[str]:
        return set(self.labels.tolist())

    def keep(self, mask: np.ndarray) -> "Probes":
        return Probes(self.item_ids[mask], self.labels[mask], self.feats[mask], list(self.problems), self.seconds,
                      local=None if self.local is None else self.local[mask],
                      pages=None if self.pages is None else self.pages[mask],
                      verified=None if self.verified is None else self.verified[mask])

    def live(self, ids: np.ndarray) -> "Probes":
        """Only the probes of exemplars still in the gallery."""
        return self.keep(np.isin(self.item_ids, ids))

    def concat(self, other: "Probes") -> "Probes":
        return Probes(np.concatenate([self.item_ids, other.item_ids]), np.concatenate([self.labels, other.labels]),
                      np.concatenate([self.feats, other.feats]), self.problems + other.problems,
                      self.seconds + other.seconds,
                      local=other.local if not len(self) else self.local if not len(other) else
                      None if self.local is None or other.local is None else
                      np.concatenate([self.local, other.local]),
                      pages=other.pages if not len(self) else self.pages if not len(other) else
                      None if self.pages is None or other.pages is None else
                      np.concatenate([self.pages, other.pages]),
                      verified=_concat_memos(self, other))

    def write(self, fh: Any) -> None:
        dim = int(self.feats.shape[1])
        vec = pa.FixedSizeListArray.from_arrays(pa.array(self.feats.reshape(-1), pa.float32()), dim)
        table = pa.table({"item_id": pa.array(self.item_ids, pa.int64()),
                          "label": pa.array([str(x) for x in self.labels], pa.string()), "vector": vec})
        pq.write_table(table, fh)

    @classmethod
    def read(cls, path: str | os.PathLike, dim: int) -> "Probes":
        t = pq.read_table(path)
        if t.num_columns < 3 or t.schema.names[:3] != ["item_id", "label", "vector"]:
            raise ValueError(f"{path}: not a probes file (columns {t.schema.names})")
        vec = t.column("vector").combine_chunks()
        feats = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        if len(t) and feats.size != len(t) * dim:
            raise ValueError(f"{path}: probe vectors are not {dim}-d")
        return cls(t.column("item_id").to_numpy().astype(np.int64),
                   np.asarray(t.column("label").to_pylist(), dtype=object), feats.reshape(len(t), dim))


MEMO_SLOTS = 2  # a probe is verified twice per measurement: against the whole gallery, and without its own type


def _concat_memos(a: Probes, b: Probes) -> np.ndarray | None:
    """Remembered deltas of two probe sets, one after the other (a set without any: rows of none)."""
    have = [p.verified for p in (a, b) if p.verified is not None]
    if not have:
        return None
    width = have[0].shape[2]
    rows = [p.verified if p.verified is not None and p.verified.shape[2] == width
            else np.full((len(p), MEMO_SLOTS, width), -1.0) for p in (a, b)]
    return np.concatenate(rows)


class _Memo(dict):
    """A probe's remembered deltas by candidate ids; notes which ones this measurement used."""

    def __init__(self, seed: dict) -> None:
        super().__init__(seed)
        self.used: list[tuple[int, ...]] = []

    def _note(self, key: tuple[int, ...]) -> None:
        if key in self.used:
            self.used.remove(key)
        self.used.append(key)

    def get(self, key: Any, default: Any = None) -> Any:
        value = super().get(key, default)
        if value is not None:
            self._note(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._note(key)


def _memos(rows: np.ndarray | None, n: int, k: int) -> list[_Memo]:
    """Per probe, the deltas remembered in ``rows`` ((n, MEMO_SLOTS, 2k), or None: nothing)."""
    out = []
    for i in range(n):
        seed = {}
        if rows is not None and rows.shape[2] == 2 * k:
            for slot in np.asarray(rows[i]):
                ids, deltas = slot[:k], slot[k:]
                valid = ids >= 0
                if valid.sum() >= 2:
                    seed[tuple(int(x) for x in ids[valid])] = deltas[valid].astype(np.float32)
        out.append(_Memo(seed))
    return out


def _memo_rows(memos: Sequence[_Memo], k: int) -> np.ndarray:
    """The deltas each probe used in this measurement (its last MEMO_SLOTS), as rows to keep."""
    out = np.full((len(memos), MEMO_SLOTS, 2 * k), -1.0)
    for i, m in enumerate(memos):
        for j, key in enumerate(m.used[-MEMO_SLOTS:]):
            out[i, j, :len(key)] = key
            out[i, j, k:k + len(key)] = m[key]
    return out


def _seed(key: str, k: int) -> int:
    h = hashlib.sha256(f"docretriever-selfcal\x1f{key}\x1f{k}".encode()).digest()
    return int.from_bytes(h[:8], "little")


def make_probes(exemplars: Sequence[tuple[int, str, Any, str]], encoder: Any, per_type: int, settings: Settings,
                progress: Callable[[int], None] | None = None, prints: tuple[int, int] | None = None) -> Probes:
    """Simulate ``per_type`` captures of each ``(item_id, label, image, seed_key)`` and encode them
    (with their local maps when the model has them: a gallery that re-ranks scores probes that way).

    ``image``: a path, bytes or BGR array; ``seed_key`` (the image's sha256) makes the captures
    the same whenever the same image is probed.  An image that cannot be read is listed in
    ``problems`` and skipped (its type is then not probed), never fatal: the gallery write it
    belongs to already read it once.  ``prints`` (keypoints, side): also each capture's page print,
    for a gallery that verifies (its probes are then scored the way its searches are).
    """
    from encoders.capture import PRESETS, simulate_capture
    from encoders.decode import DecodeError, read_image

    params = PRESETS[settings.preset]
    from encoders.local import Encoded

    ids, labels, problems = [], [], []
    rows: list[np.ndarray] = []
    out = Encoded(encoder, bool(getattr(encoder, "has_local", False)))
    for item_id, label, image, key in exemplars:
        try:
            doc = read_image(image, target_hw=PROBE_DECODE_HW)
        except (DecodeError, OSError) as exc:
            problems.append(f"{label!r} (id {item_id}): cannot read its exemplar for self-calibration ({exc})")
            continue
        caps = [simulate_capture(doc, np.random.default_rng(_seed(key, k)), params) for k in range(per_type)]
        for i in range(0, len(caps), 32):
            out.add(np.stack([encoder.preprocess(c) for c in caps[i:i + 32]]))
        if prints is not None:
            from encoders import pageprint

            hw = pageprint.decode_hw(encoder.input_size, prints[1])
            rows += [pageprint.StoredCapture.of_image(read_image(c, hw), prints[0], prints[1]).png for c in caps]
        ids += [item_id] * per_type
        labels += [label] * per_type
        if progress is not None:
            progress(1)
    feats, local = out.result()
    pages = None
    if prints is not None:
        pages = np.empty(len(rows), dtype=object)
        pages[:] = rows
    return Probes(np.asarray(ids, np.int64), np.asarray(labels, dtype=object), feats, problems, local=local,
                  pages=pages)


def measure(gallery: Any, probes: Probes, count: int, n_labels: int, settings: Settings, encoder_info: dict[str, Any],
            rule: Any = None, fpirs: Sequence[float] | None = None) -> dict[str, Any]:
    """The self-calibration record: FPIR rows measured with ``probes`` against ``gallery``.

    ``gallery`` needs ``search`` and ``labels_of`` (a Gallery, a state view, a MemoryGallery).
    Rows that need more non-mated probes than there are stay in the table as not measurable.
    """
    from retriever import openset as O

    t0 = time.perf_counter()
    rule = O.DecisionRule.from_value(rule)
    if n_labels < 3 and rule.uses_margin:
        rule = O.RULES["cosine"]  # with one type left out, a 2-type register has no runner-up
    fpirs = tuple(fpirs or O.DEFAULT_FPIRS)
    rec: dict[str, Any] = {
        "enabled": True, "version": VERSION, "settings": settings.to_dict(), "rule": rule.to_dict(),
        "encoder": {"name": encoder_info.get("name"), "fingerprint": encoder_info.get("fingerprint")},
        "types": int(n_labels), "types_probed": len(probes.types), "probes": len(probes),
        "measured_at": _now(),
    }
    if n_labels < 2:
        reason = (f"the gallery has {n_labels} label(s): FPIR cannot be measured (leave-one-type-out needs >= 2 "
                  "types); the model's pair table is used instead")
        return {**rec, "status": "not measurable", "reason": reason, "leave_one_out": 0,
                "table": [{"fpir": f, "threshold": None, "dir": None, "measured_fpir": None, "measurable": False}
                          for f in fpirs], "seconds": round(time.perf_counter() - t0, 3)}
    if len(probes) == 0:
        return {**rec, "status": "no probes", "reason": "no exemplar could be probed (imported vectors have no images)",
                "leave_one_out": 0, "table": [], "seconds": round(time.perf_counter() - t0, 3)}
    local = probes.local if getattr(gallery, "reranks", False) else None
    pages = None
    if local is not None and getattr(gallery, "verifies", False) and probes.pages is not None:
        from encoders import pageprint

        rec_pages = gallery.manifest["pages"]
        kp, k = int(rec_pages["keypoints"]), int(rec_pages["k"])
        pages = [pageprint.StoredCapture(png, kp, int(rec_pages["side"])) for png in probes.pages]
        for p, memo in zip(pages, _memos(probes.verified, len(pages), k)):
            p.memo = memo
    rec["scoring"] = "verified" if pages is not None else "reranked" if local is not None else "cosine"
    own = [str(x) for x in probes.labels.tolist()]
    ranked = O.ranked_labels(gallery, probes.feats, want=3, count=count, n_labels=n_labels, local=local, pages=pages)
    # the non-mated view searches without the probe's own type: with re-ranking, its exemplar among the
    # candidates would move the others' scores (and bias the threshold low); with the cosine both agree
    left_out = O.ranked_labels(gallery, probes.feats, want=2, count=count, n_labels=n_labels, local=local,
                               exclude=own, pages=pages) if local is not None else None
    if pages is not None:  # what a later write need not verify again
        probes.verified = _memo_rows([p.memo for p in pages], k)
        rec["verify_memo"] = pageprint.memo_tag(pageprint.comparison_of(rec_pages))
    scores = O.scores_from_ranked(ranked, own, leave_own_out=True, left_out=left_out)
    rows = O.dir_table(scores, rule, fpirs)
    measured = [r for r in rows if r["measurable"]]
    status = "measured" if measured else "not measurable"
    reason = None if measured else (f"{scores.n_unknown} leave-one-out probes: FPIR {max(fpirs):g} needs "
                                    f">= {math.ceil(1 / max(fpirs))}")
    sample = "" if len(probes.types) >= n_labels else f" (a sample: {len(probes.types)} of {n_labels} types)"
    source = (f"{len(probes)} simulated captures (preset {settings.preset}) of {len(probes.types)} types{sample}, "
              f"leave one type out, {rec['measured_at']}")
    return {**rec, "status": status, "reason": reason, "leave_one_out": scores.n_unknown,
            "top1_accuracy": float(np.mean(scores.known_correct)) if scores.n_known else None,
            "table": rows, "look_alikes": look_alikes(ranked, left_out, own, rule, rows),
            "source": source, "seconds": round(time.perf_counter() - t0, 3)}


def look_alikes(ranked: Sequence[Sequence[tuple[str, float]]],
                left_out: Sequence[Sequence[tuple[str, float]]] | None, own: Sequence[str], rule: Any,
                rows: Sequence[dict[str, Any]], fpir: float = 1e-2, top: int = 5) -> list[dict[str, Any]]:
    """The type pairs the threshold at ``fpir`` is set among: of the highest-scoring leave-one-out
    probes (10x the share that FPIR lets through, at least 10), how many of a type were taken for
    which other type, most first.

    Why: on a register holding near-copies (crops of one picture, revisions of one form), their
    probes fill the top of the non-mated scores, the threshold must clear them, and a self-calibrated
    gallery then accepts little.  Naming the pairs tells the user what to do: merge the two labels, or
    register exemplars that show where the types differ."""
    row = next((r for r in rows if r.get("measurable") and abs(r["fpir"] - fpir) < 1e-12), None)
    if row is None or row.get("threshold") is None:
        return []
    probes = []
    for i, labels in enumerate(ranked):
        rest = [(lab, s) for lab, s in (labels if left_out is None else left_out[i]) if lab != own[i]]
        if rest:
            s2 = rest[1][1] if len(rest) > 1 else math.nan
            probes.append((float(rule.score(rest[0][1], s2 if rule.uses_margin else None)), own[i], rest[0][0]))
    probes.sort(key=lambda p: -p[0] if math.isfinite(p[0]) else math.inf)
    highest = probes[:max(10, math.ceil(10 * fpir * len(probes)))]
    pairs: dict[tuple[str, str], list[float]] = {}
    for score, a, b in highest:
        pairs.setdefault((a, b), []).append(score)
    best = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), -max(kv[1])))[:top]
    return [{"type": a, "taken_for": b, "probes": len(v), "max_score": round(max(v), 4), "fpir": fpir,
             "among": len(highest), "of": len(probes), "threshold": row["threshold"]} for (a, b), v in best]


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

