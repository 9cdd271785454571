"""Index specs (what the user asked for) and plans (what is built now, for this many vectors).

A gallery records two things in its manifest:

* ``index_spec`` + ``index_params`` — the user's choice at ``indexer build --index`` (with
  ``--param KEY=VALUE`` overrides): ``flat``, ``hnsw``, ``ivf``, ``auto``, or
  ``faiss:<factory string>`` for experts (e.g. ``faiss:IVF4096_HNSW32,SQ8``).
* ``index`` — the :class:`Plan` actually built for the current gallery size: its type, FAISS
  factory string and parameters, and why it was chosen (``reason``).

Why separate them: ``auto`` and ``ivf`` are *policies*.  An IVF index cannot be trained on a
handful of vectors, so an ``ivf`` gallery is exact flat until it holds enough vectors to train
``nlist`` lists; an ``auto`` gallery is flat while exact search is sub-millisecond and IVF above;
and an IVF index trained on N vectors is retrained once the gallery grows past
``IVF_RETRAIN_FACTOR * N`` (its lists were cut for a different distribution and size).  Every
write re-plans (:func:`plan_for`), and the gallery rebuilds the index when the plan changes type
or asks for a retrain (:func:`rebuild_reason`).

The numbers below come from ``scripts/bench_index.py`` on this 2-core box (1 FAISS thread,
256-d features clustered around real encoder features); see the README table and the comments.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .errors import GalleryError

KINDS = ("flat", "hnsw", "ivf", "auto")
FAISS_PREFIX = "faiss:"

# --- auto: exact search while it is sub-millisecond --------------------------------------------
# Exact (flat) single-query top-10 on 1 thread grows linearly with N.  scripts/bench_index.py's
# flat sweep on this box (2 cores shared with a training job, load ~4; scripts/results/): p50 /
# p99-CPU ms were 0.28 / 0.69 at 10k, 1.2 / 1.6 at 20k, 2.1 / 2.6 at 30k, 4.7 / 5.1 at 50k,
# 12 / 9 at 100k (measured-physics.md §3, a quieter run: 0.15 ms at 10k, 5 ms at 100k).  So
# exact search is sub-millisecond up to ~10k vectors; above AUTO_FLAT_MAX an auto gallery becomes
# IVF.  It goes back to flat only below AUTO_FLAT_MAX * AUTO_SHRINK_HYSTERESIS, so a gallery
# hovering at the threshold does not flip (each flip is a full rebuild).
AUTO_FLAT_MAX = 10_000
AUTO_SHRINK_HYSTERESIS = 0.5

# --- IVF -----------------------------------------------------------------------------------------
# k-means needs training points per centroid; FAISS warns below 39.  A gallery smaller than
# IVF_MIN_POINTS_PER_LIST * nlist is served by an exact flat index until it is big enough.
IVF_MIN_POINTS_PER_LIST = 39
# Training sample cap per list: 64 points/list (FAISS's default is 256/list: 4x the points, and
# k-means time is linear in them; bench_index.py at 1M: nlist 2048 trained in 19 s, nlist 4096 in
# 90 s on one contended core).
IVF_TRAIN_POINTS_PER_LIST = 64
# Retrain (rebuild) when the gallery has grown past this factor of the size it was trained on:
# the lists were cut for the old size (list length ~ N / nlist grows, so search cost does too).
IVF_RETRAIN_FACTOR = 2.0
# nlist = IVF_NLIST_PER_SQRT * sqrt(N) as a power of two (2048 at 1M, 512 at 100k, 256 at 10k),
# clamped to [16, 65536] and to what N vectors can train.  bench_index.py (IVF-SQ8 + re-ranking,
# real-feature data, 1 thread, load 3.5-4.5), top-1 label agreement with exact search / p50 ms:
#   1M    nlist 2048: nprobe 32 0.987 / 1.13, nprobe 48 0.995 / 1.66, nprobe 64 0.998 / 5.05*
#         nlist 4096: nprobe 32 0.981 / 0.94, nprobe 48 0.989 / 1.17, nprobe 64 0.992 / 1.48
#   100k  nlist 1024: nprobe 32 0.991 / 0.41, nprobe 48 0.994 / 0.43;  nlist 2048: nprobe 48 0.985
#   (* a load spike).  Agreement depends on the fraction of lists probed; at equal latency
#   nlist 2048 and 4096 are alike, and 2048 trains 4.7x faster (retraining and compact at 1M).
IVF_NLIST_PER_SQRT = 2.0
IVF_NLIST_MIN, IVF_NLIST_MAX = 16, 65_536
# nprobe 48 with nlist ~2*sqrt(N): >= 0.99 top-1 label agreement at 10k, 100k and 1M (above; the
# auto rows of the final run: 100k IVF512 0.996 at p50 0.76 ms, 1M IVF2048 0.995 at p50 1.61 ms,
# p99 2.39 ms — sub-millisecond p99 at 1M needs nprobe ~16, i.e. agreement ~0.95, on this data).
# rerank 4 (40 candidates for top-10): SQ8 scores alone reorder near-ties (1M, nlist 2048,
# nprobe 64: label@1 0.977 without re-ranking, 0.998 with it).  SQ4 codes were slower (decoding)
# at equal agreement; PQ fast-scan (PQ32x4fs/PQ64x4fs) missed true neighbours even re-ranking 100.
#
# Superseded on a quieter run (scripts/results/bench_index.jsonl, 2026-11-30; one core free, the other
# training): IVF-SQ8 is memory-bound, ~0.6 ms per 1M-gallery query at nprobe 48 whatever the machine,
# and its label agreement at nprobe 48 varied between 0.984 and 0.993 across data draws.  4-bit PQ
# fast-scan codes over pairs of dimensions ("pq4fs": PQ{d/2}x4fs, 64 B/vector at 256-d) scan ~3x
# faster per probed list, and re-ranking 100 candidates by exact cosine recovers what the coarser codes
# lose: at 1M, nlist 2048, nprobe 128, rerank 10: label agreement 0.995 at p50 0.47 / p99 0.61 ms,
# against 0.996 at 1.38 / 1.69 ms for SQ8 at the same nprobe (same data, same contended core).
# (The earlier 4-bit failures were PQ32x4fs/PQ64x4fs: 8 or 4 dimensions per 4-bit code.)
# The full bench_index.py run that followed (anchors encoded with the newly shipped model, whose
# features spread more: an easier gallery), 1M, one FAISS thread, the other core training:
# pq4fs nprobe 128 label agreement 0.999 at p50 0.56 / p99 0.81 ms (Gallery API, warm: 0.54 / 0.79);
# SQ8 nprobe 32 0.996 at 0.38 / 0.52 ms.  SQ8 would be faster on this data, but on the harder gallery
# (previous model's anchors; first run of the day) SQ8 reached 0.988 at nprobe 64 and 0.994 only at
# nprobe 128 (p99 1.29 ms), and pq4fs uses 72 instead of 264 B/vector.  Re-measured on exactly that
# harder draw (scripts/results/bench_index_hard.jsonl): pq4fs+rerank nprobe 64 0.988, 96 0.992,
# 128 0.994 at p50 0.58 / p99 0.78 ms; SQ8+rerank nprobe 48 0.984, 64 0.988 (p99 0.88 ms).
IVF_DEFAULTS: dict[str, Any] = {"nlist": None, "nprobe": 128, "codec": "pq4fs", "rerank": 10}
IVF_CODECS = {"flat": "Flat", "sq8": "SQ8", "sq4": "SQ4", "fp16": "SQfp16", "pq8": "PQ8", "pq16": "PQ16",
              "pq32": "PQ32", "pq64": "PQ64", "pq4fs": "PQ{half}x4fs"}


def codec_factory(codec: str, dim: int) -> str:
    """The FAISS factory fragment of ``codec`` for ``dim``-d vectors (pq4fs: one 4-bit code per pair
    of dimensions; one per dimension if ``dim`` is odd)."""
    frag = IVF_CODECS[codec]
    return frag.format(half=dim // 2 if dim % 2 == 0 else dim) if "{half}" in frag else frag

# --- HNSW ----------------------------------------------------------------------------------------
# M=32 / efConstruction=80: measured-physics.md §3 (isotropic clusters: recall@1 0.991 at
# efSearch 128 at 1M).  On real-feature data (bench_index.py) HNSW degraded with size: top-1 label
# agreement 0.996 at 10k (efSearch 128), 0.988 at 100k and 0.938 at 1M even at efSearch 512; it
# took 317 s to build 1M on one core and cannot remove (tombstones + `indexer compact`).  So auto
# never picks it; it stays available for galleries where it measures better.
HNSW_DEFAULTS: dict[str, Any] = {"M": 32, "efConstruction": 80, "efSearch": 128, "codec": "flat", "rerank": 4}
HNSW_CODECS = {"flat": "Flat", "sq8": "SQ8"}
# HNSW over SQ8 codes must learn the per-dimension ranges first: flat below this many vectors.
HNSW_SQ_MIN_TRAIN = 256

# Exact re-ranking: a lossy index (SQ8/PQ codes) returns rerank*k candidates (at least
# RERANK_MIN), re-scored by exact cosine against the float vectors kept beside the index.
RERANK_MIN = 32

# Per-query search parameters and which plan types they apply to.
SEARCH_PARAMS = {"efSearch": ("hnsw", "faiss"), "nprobe": ("ivf", "faiss"), "rerank": ("hnsw", "ivf", "faiss")}

_PARAMS: dict[str, dict[str, type]] = {
    "flat": {},
    "hnsw": {"M": int, "efConstruction": int, "efSearch": int, "codec": str, "rerank": int},
    "ivf": {"nlist": int, "nprobe": int, "codec": str, "rerank": int},
    "auto": {"flat_max": int, "nlist": int, "nprobe": int, "codec": str, "rerank": int},
    "faiss": {"efSearch": int, "nprobe": int, "rerank": int},
}


@dataclass(frozen=True)
class Spec:
    """The user's choice: ``kind`` in KINDS or "faiss" (then ``factory`` is set), plus overrides."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    factory: str | None = None

    @property
    def text(self) -> str:
        """What the manifest stores as ``index_spec``."""
        return FAISS_PREFIX + self.factory if self.kind == "faiss" else self.kind


@dataclass
class Plan:
    """The index built now.  Stored as ``manifest["index"]``."""

    type: str  # flat | hnsw | ivf | faiss
    factory: str  # FAISS factory string of the inner index (ids are mapped by IDMap2 or IVF)
    rerank: int = 0  # candidates factor for exact re-ranking; 0 = scores are already exact
    M: int | None = None
    efConstruction: int | None = None
    efSearch: int | None = None
    nlist: int | None = None
    nprobe: int | None = None
    codec: str | None = None
    trained_on: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Plan":
        if not d:  # galleries written before index plans existed are flat
            return flat_plan("flat")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def search_defaults(self) -> dict[str, int]:
        out = {}
        if self.efSearch is not None:
            out["efSearch"] = int(self.efSearch)
        if self.nprobe is not None:
            out["nprobe"] = int(self.nprobe)
        if self.rerank:
            out["rerank"] = int(self.rerank)
        return out


def supported_text() -> str:
    return "auto, flat, hnsw, ivf, or faiss:<factory string> (e.g. faiss:HNSW32,Flat)"


def parse_spec(text: str, params: Mapping[str, Any] | None = None) -> Spec:
    """Validate ``text`` (+ ``params``) into a :class:`Spec`; raises GalleryError naming the problem."""
    text = str(text).strip()
    if text.startswith(FAISS_PREFIX):
        factory = text[len(FAISS_PREFIX):].strip()
        if not factory:
            raise GalleryError(f"index spec {text!r}: give a FAISS factory string after 'faiss:'")
        kind = "faiss"
    elif text in KINDS:
        kind, factory = text, None
    else:
        raise GalleryError(f"index spec {text!r} is not supported by this docretriever "
                           f"(supported: {supported_text()})")
    return Spec(kind, _check_params(kind, dict(params or {})), factory)


def parse_param_pairs(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """CLI ``--param KEY=VALUE`` strings -> dict (ints where they look like ints)."""
    out: dict[str, Any] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise GalleryError(f"index parameter {p!r} is not KEY=VALUE (e.g. efSearch=128)")
        v = value.strip()
        out[key.strip()] = int(v) if v.lstrip("-").isdigit() else v
    return out


def _check_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    allowed = _PARAMS[kind]
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in allowed:
            raise GalleryError(f"index parameter {key!r} does not apply to index {kind!r} "
                               f"(parameters: {', '.join(sorted(allowed)) or 'none'})")
        want = allowed[key]
        if want is int:
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise GalleryError(f"index parameter {key}={value!r} must be an integer") from None
            if value < (0 if key == "rerank" else 1):
                raise GalleryError(f"index parameter {key}={value} must be {'>= 0' if key == 'rerank' else '>= 1'}")
        else:
            value = str(value).lower()
            codecs = HNSW_CODECS if kind == "hnsw" else IVF_CODECS
            if key == "codec" and value not in codecs:
                raise GalleryError(f"index parameter codec={value!r} for {kind!r}: choose one of "
                                   f"{', '.join(codecs)}")
        out[key] = value
    return out


def check_search_params(params: Mapping[str, Any] | None) -> dict[str, int]:
    """Per-query parameters: known keys, integers >= 1 (``rerank`` >= 0; 0 = no re-ranking)."""
    out: dict[str, int] = {}
    for key, value in (params or {}).items():
        if key not in SEARCH_PARAMS:
            raise GalleryError(f"unknown search parameter {key!r} (known: {', '.join(SEARCH_PARAMS)})")
        low = 0 if key == "rerank" else 1
        if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)) or \
                not str(value).strip().isdigit() or int(value) < low:
            raise GalleryError(f"search parameter {key}={value!r} must be an integer >= {low}")
        out[key] = int(value)
    return out


def auto_nlist(n: int) -> int:
    """nlist for ``n`` vectors: IVF_NLIST_PER_SQRT * sqrt(n) as a power of two, clamped to
    [IVF_NLIST_MIN, IVF_NLIST_MAX] and to what ``n`` vectors can train (IVF_MIN_POINTS_PER_LIST each)."""
    raw = max(1.0, IVF_NLIST_PER_SQRT * math.sqrt(max(n, 1)))
    p = 2 ** round(math.log2(raw))
    trainable = 2 ** int(math.log2(max(n // IVF_MIN_POINTS_PER_LIST, 1)))
    return int(min(IVF_NLIST_MAX, max(IVF_NLIST_MIN, min(p, trainable))))


def ivf_min_vectors(nlist: int) -> int:
    return IVF_MIN_POINTS_PER_LIST * nlist


def flat_plan(reason: str) -> Plan:
    return Plan(type="flat", factory="Flat", reason=reason)


def _ivf_plan(params: Mapping[str, Any], n: int, who: str, dim: int) -> Plan:
    p = {**IVF_DEFAULTS, **{k: v for k, v in params.items() if k in IVF_DEFAULTS}}
    nlist = int(p["nlist"]) if p.get("nlist") else auto_nlist(n)
    codec = str(p["codec"])
    factory = f"IVF{nlist},{codec_factory(codec, dim)}"
    need = ivf_min_vectors(nlist)
    if codec.startswith("pq"):  # each sub-quantizer learns 256 centroids (16 with 4-bit codes)
        need = max(need, IVF_MIN_POINTS_PER_LIST * (16 if codec.endswith("4fs") else 256))
    if n < need:
        return flat_plan(f"{who}: {n} vector(s) are too few to train {factory} (needs >= "
                         f"{need}: {IVF_MIN_POINTS_PER_LIST} per centroid); exact flat search until then")
    lossy = codec != "flat"
    return Plan(type="ivf", factory=factory, nlist=nlist, nprobe=int(p["nprobe"]),
                codec=codec, rerank=int(p["rerank"]) if lossy else 0, trained_on=n,
                reason=f"{who}: IVF nlist={nlist} trained on {n} vectors; retrained past "
                       f"{int(IVF_RETRAIN_FACTOR * n)}")


def plan_for(spec: Spec, n: int, current: Plan | None = None, dim: int = 256) -> Plan:
    """The index to build for ``n`` ``dim``-d vectors under ``spec`` (``current``: the plan now on disk)."""
    if spec.kind == "flat":
        return flat_plan("flat: exact search")
    if spec.kind == "hnsw":
        p = {**HNSW_DEFAULTS, **spec.params}
        lossy = p["codec"] != "flat"
        if lossy and n < HNSW_SQ_MIN_TRAIN:
            return flat_plan(f"hnsw: {n} vector(s) are too few to train {p['codec']} codes (needs >= "
                             f"{HNSW_SQ_MIN_TRAIN}); exact flat search until then")
        return Plan(type="hnsw", factory=f"HNSW{int(p['M'])},{HNSW_CODECS[p['codec']]}", M=int(p["M"]),
                    efConstruction=int(p["efConstruction"]), efSearch=int(p["efSearch"]), codec=p["codec"],
                    rerank=int(p["rerank"]) if lossy else 0, reason="hnsw: removals are tombstones until compact")
    if spec.kind == "ivf":
        return _ivf_plan(spec.params, n, "ivf", dim)
    if spec.kind == "auto":
        flat_max = int(spec.params.get("flat_max", AUTO_FLAT_MAX))
        stay_ivf = current is not None and current.type == "ivf" and n >= flat_max * AUTO_SHRINK_HYSTERESIS
        if n <= flat_max and not stay_ivf:
            return flat_plan(f"auto: exact search up to {flat_max} vectors (sub-millisecond there)")
        if stay_ivf and n <= flat_max:
            return current  # type: ignore[return-value]
        return _ivf_plan(spec.params, n, f"auto: {n} > {flat_max} vectors", dim)
    assert spec.kind == "faiss" and spec.factory
    return Plan(type="faiss", factory=spec.factory, efSearch=spec.params.get("efSearch"),
                nprobe=spec.params.get("nprobe"), rerank=int(spec.params.get("rerank", 4)),
                trained_on=n, reason="faiss factory string given by the user")


def eventual_plan(spec: Spec, dim: int) -> Plan:
    """The plan ``spec`` leads to once the gallery is big (to validate a spec before any data)."""
    return plan_for(spec, max(10**6, ivf_min_vectors(int(spec.params.get("nlist") or IVF_NLIST_MIN))), dim=dim)


def rebuild_reason(spec: Spec, current: Plan, n: int) -> str | None:
    """Why the index must be rebuilt before holding ``n`` vectors, or None if it can grow in place.

    Rebuilds: the plan's type changes (flat -> IVF once an ``ivf``/``auto`` gallery is big enough
    to train, IVF -> flat when an ``auto`` gallery shrank below the hysteresis bound), or a
    trained index (IVF, or a trained FAISS factory index) is asked to hold more than
    IVF_RETRAIN_FACTOR times its training size.  A trained IVF index keeps serving a gallery that
    shrank below its training minimum (searching needs no training).
    """
    if current.trained_on and n > IVF_RETRAIN_FACTOR * current.trained_on:
        return (f"{current.type} index trained on {current.trained_on} vectors would hold {n} "
                f"(> {IVF_RETRAIN_FACTOR:g}x its training size): retrain")
    want = plan_for(spec, n, current)
    if current.type == "ivf" and want.type == "flat" and spec.kind == "ivf":
        return None
    if want.type != current.type:
        return f"index type changes: {current.type} -> {want.type} ({want.reason})"
    return None
