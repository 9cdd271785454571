#!/usr/bin/env python
"""Benchmark gallery index types at 10k / 100k / 1M vectors (a script, not a timed test).

Prints one JSON object per configuration on stdout, then a markdown table (for the README).
The numbers set ``indexer.specs``'s ``auto`` thresholds and IVF/HNSW parameters.

Data: 256-d features clustered like real ones.  A few hundred documents are rendered
(30 synthetic families x 10 templates) and encoded with the shipped model: their clean
features are the *anchors*; the differences between two fills of one template, between a
render and its simulated capture, and between templates of one family give three real
variation covariances.  Synthetic document types are anchors moved by template-like noise
(many types per anchor: confusable siblings); exemplars are a type's centre plus fill-like
(70%) or capture-like (30%) noise, with ~10% near-duplicates; queries are capture-like draws.
The 600 real clean features are gallery items too, and their 300 real captures are queries.

Metrics (against exact FlatIP search of the same gallery): recall@1 (same top-1 id), recall@10
(top-10 overlap / 10), label_agreement_at_1 (top-1 has the exact top-1's label: what
classification needs).  Latency: single-query top-10 on 1 FAISS thread through
``indexer.index.search`` (the gallery's own search path: parameters, tombstone filter, exact
re-ranking), p50/p99 over --queries queries (200 for exact search at 1M); qps: one batch of
1024 queries.  add_10k_s: adding 10k more vectors to the built index (HNSW/IVF insert cost).
bytes_per_vector: RAM of the index per vector (codes + ids + graph); exact_store_bytes_per_vector:
the float32 copy kept on disk (memory-mapped) for re-ranking lossy codes.
``--gallery`` also measures the Gallery API for the ``auto`` spec: import, open (mmap), search,
add 10k (full atomic commit), remove, compact.  Its searches run in a fresh process, twice over the
same queries: the first pass pays the page faults of the memory-mapped index and exact vectors
(``cold_p50_ms``/``cold_p99_ms``), the second is a running service's steady state (``p50_ms``/``p99_ms``).

The box is shared with a training job: every row reports the load average and the CPU used by
other processes during the measurement ("others_cores").

    python scripts/bench_index.py --sizes 10000,100000            # minutes
    nohup python scripts/bench_index.py > bench.jsonl 2> bench.log &   # 1M too: ~30+ minutes
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import faiss  # noqa: E402

from indexer import index as idx  # noqa: E402
from indexer.exact import ExactStore  # noqa: E402
from indexer.specs import Plan, auto_nlist, codec_factory  # noqa: E402

DIM = 256
K = 10
N_FAMILIES_TEMPLATES = 10  # templates rendered per synthetic family
EXEMPLARS_PER_TYPE = 50  # mean; lognormal spread
FILL_SHARE = 0.7
NEAR_DUP_SHARE = 0.1
TEMPLATE_SCALE = 0.7  # synthetic type centre = anchor + this * template-like noise
CENTROIDS: dict[tuple[int, int | None], tuple[np.ndarray, float]] = {}  # (n, nlist) -> (k-means centroids, train s)


# ---------------------------------------------------------------------------- load / contention
class Meter:
    """Wall time, own CPU time and other processes' CPU (cores) over a block."""

    def __enter__(self) -> "Meter":
        self.t, self.cpu, self.busy = time.perf_counter(), time.process_time(), _busy_jiffies()
        return self

    def __exit__(self, *a: Any) -> None:
        self.wall = time.perf_counter() - self.t
        own = time.process_time() - self.cpu
        busy = (_busy_jiffies() - self.busy) / os.sysconf("SC_CLK_TCK")
        self.others = max(0.0, (busy - own) / self.wall) if self.wall > 0 else 0.0


def _busy_jiffies() -> int:
    with open("/proc/stat") as fh:
        parts = [int(v) for v in fh.readline().split()[1:]]
    return sum(parts) - parts[3] - parts[4]  # minus idle and iowait


def loadavg() -> float:
    return float(open("/proc/loadavg").read().split()[0])


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- data
def real_anchors(cache: Path, n_families: int | None) -> dict[str, np.ndarray]:
    """Render + encode documents with the shipped model (cached: it takes ~1 minute)."""
    import encoders

    enc = encoders.load(threads=1)
    path = cache / f"anchors-{enc.fingerprint[:16]}.npz"
    if path.is_file():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    import cv2

    cv2.setNumThreads(1)
    from encoders.capture import simulate_capture
    from encoders.training.synth import FAMILIES, render_document

    fams = sorted(FAMILIES)[:n_families]
    f0, f1, fc, fam = [], [], [], []
    for fi, name in enumerate(fams):
        r0 = [render_document(name, ts, 0) for ts in range(N_FAMILIES_TEMPLATES)]
        r1 = [render_document(name, ts, 1) for ts in range(N_FAMILIES_TEMPLATES)]
        caps = [simulate_capture(im, np.random.default_rng(fi * 100 + ts), "eval") for ts, im in enumerate(r0)]
        f0.append(enc.encode(r0))
        f1.append(enc.encode(r1))
        fc.append(enc.encode(caps))
        fam += [fi] * N_FAMILIES_TEMPLATES
        log(f"anchors: {name} ({len(fam)} documents)")
    out = {"f0": np.concatenate(f0), "f1": np.concatenate(f1), "fc": np.concatenate(fc), "fam": np.asarray(fam)}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    faiss.normalize_L2(x)
    return x


class Generator:
    """Synthetic types around real anchors, noise drawn from real variation (see module doc)."""

    def __init__(self, anchors: dict[str, np.ndarray], seed: int) -> None:
        self.a = anchors
        self.rng = np.random.default_rng(seed)
        f0, f1, fc, fam = anchors["f0"], anchors["f1"], anchors["fc"], anchors["fam"]
        fam_mean = np.stack([f0[fam == f].mean(0) for f in fam])
        self.d_fill, self.d_cap, self.d_tmpl = (f1 - f0), (fc - f0), (f0 - fam_mean)

    def noise(self, deltas: np.ndarray, n: int) -> np.ndarray:
        """Gaussian with the deltas' second moment: random combinations of observed deltas."""
        w = self.rng.standard_normal((n, len(deltas)), dtype=np.float32) / np.sqrt(len(deltas))
        return w @ deltas.astype(np.float32)

    def gallery(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vectors, labels (int type ids; real anchors first), centres of the synthetic types)."""
        real = np.concatenate([self.a["f0"], self.a["f1"]])
        real_lab = np.concatenate([np.arange(len(self.a["f0"]))] * 2)
        m = max(0, n - len(real))
        n_types = max(1, m // EXEMPLARS_PER_TYPE)
        base = self.rng.integers(0, len(self.a["f0"]), n_types)
        centres = _normalise(self.a["f0"][base] + TEMPLATE_SCALE * self.noise(self.d_tmpl, n_types))
        weights = self.rng.lognormal(0.0, 0.8, n_types)
        counts = np.maximum(1, np.floor(weights / weights.sum() * m)).astype(int)
        while counts.sum() < m:
            counts[self.rng.integers(0, n_types)] += 1
        while counts.sum() > m:
            j = self.rng.integers(0, n_types)
            counts[j] -= counts[j] > 1
        lab = np.repeat(np.arange(n_types), counts)[:m]
        out = np.empty((m, DIM), np.float32)
        step = 100_000
        for s in range(0, m, step):
            e = min(m, s + step)
            is_fill = self.rng.random(e - s) < FILL_SHARE
            noise = np.where(is_fill[:, None], self.noise(self.d_fill, e - s), self.noise(self.d_cap, e - s))
            out[s:e] = _normalise(centres[lab[s:e]] + noise)
        dup = self.rng.random(m) < NEAR_DUP_SHARE
        src = self.rng.integers(0, m, int(dup.sum()))
        out[dup] = _normalise(out[src] + 0.2 * self.noise(self.d_fill, int(dup.sum())))
        lab[dup] = lab[src]
        offset = len(self.a["f0"])
        vecs = np.concatenate([real, out]) if n >= len(real) else real[:n]
        labels = np.concatenate([real_lab, lab + offset]) if n >= len(real) else real_lab[:n]
        self._centres, self._offset = centres, offset
        return vecs[:n], labels[:n], centres

    def queries(self, labels: np.ndarray, nq: int) -> np.ndarray:
        """Real captures of the real types first, then capture-like draws of synthetic types."""
        real = self.a["fc"][: min(len(self.a["fc"]), nq // 3)]
        m = nq - len(real)
        syn = labels[labels >= self._offset] - self._offset
        if len(syn) == 0:
            return real
        pick = syn[self.rng.integers(0, len(syn), m)]
        return np.concatenate([real, _normalise(self._centres[pick] + self.noise(self.d_cap, m))])

    def more(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` new fill-like exemplars of existing synthetic types, with their labels."""
        t = self.rng.integers(0, len(self._centres), n)
        return _normalise(self._centres[t] + self.noise(self.d_fill, n)), t + self._offset


class UniformGenerator:
    """The other cluster shape: ``n / EXEMPLARS_PER_TYPE`` types whose centres are spread uniformly
    over the sphere (1M vectors: 20,000 clusters), exemplars and queries isotropic around them at
    the cosines of the real data (exemplar ~0.8, capture query ~0.7 to its centre).  No structure
    for an IVF quantiser to exploit: the hard case for a fixed nprobe."""

    EXEMPLAR_COS, QUERY_COS = 0.8, 0.7

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def _around(self, centres: np.ndarray, cos: float) -> np.ndarray:
        s = np.sqrt((1.0 / cos ** 2 - 1.0) / DIM)
        return _normalise(centres + self.rng.normal(0.0, s, centres.shape).astype(np.float32))

    def gallery(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_types = max(1, n // EXEMPLARS_PER_TYPE)
        self._centres = _normalise(self.rng.standard_normal((n_types, DIM), dtype=np.float32))
        labels = self.rng.integers(0, n_types, n)
        out = np.empty((n, DIM), np.float32)
        for s in range(0, n, 100_000):
            out[s:s + 100_000] = self._around(self._centres[labels[s:s + 100_000]], self.EXEMPLAR_COS)
        return out, labels, self._centres

    def queries(self, labels: np.ndarray, nq: int) -> np.ndarray:
        pick = labels[self.rng.integers(0, len(labels), nq)]
        return self._around(self._centres[pick], self.QUERY_COS)

    def more(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        t = self.rng.integers(0, len(self._centres), n)
        return self._around(self._centres[t], self.EXEMPLAR_COS), t


# ---------------------------------------------------------------------------- measurements
def latency(fn: Callable[[np.ndarray], Any], queries: np.ndarray, n: int) -> tuple[float, float, float]:
    """Single-query p50/p99 wall ms, and p99 of the thread's CPU ms (wall minus preemption by others)."""
    wall, cpu = [], []
    for i in range(n):
        q = queries[i % len(queries)][None]
        t, c = time.perf_counter(), time.thread_time()
        fn(q)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - t)
    ms, cms = np.asarray(wall) * 1e3, np.asarray(cpu) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(np.percentile(cms, 99))


def exact_topk(vecs: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Exact top-k ids by blocked matrix products (ids = row numbers), skipping ``exclude`` rows."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for s in range(0, len(vecs), 100_000):
        sims = queries @ vecs[s:s + 100_000].T
        if exclude is not None:
            ex = exclude[(exclude >= s) & (exclude < s + 100_000)] - s
            sims[:, ex] = -np.inf
        part = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        s_all = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], 1)
        i_all = np.concatenate([best_i, part + s], 1)
        o = np.argsort(-s_all, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s_all, o, 1), np.take_along_axis(i_all, o, 1)
    return best_i


def qps(fn: Callable[[np.ndarray], Any], queries: np.ndarray, repeats: int) -> float:
    batch = np.ascontiguousarray(np.resize(queries, (1024, DIM)))
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(batch)
        rates.append(len(batch) / (time.perf_counter() - t))
    return float(np.median(rates))


def quality(ids: np.ndarray, exact_ids: np.ndarray, labels_of: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    r1 = float(np.mean(ids[:, 0] == exact_ids[:, 0]))
    r10 = float(np.mean([len(set(a[a >= 0]) & set(b)) / K for a, b in zip(ids, exact_ids)]))
    ok = ids[:, 0] >= 0
    agree = np.zeros(len(ids), bool)
    agree[ok] = labels_of(ids[ok, 0]) == labels_of(exact_ids[ok, 0])
    return {"recall_at_1": round(r1, 4), "recall_at_10": round(r10, 4),
            "label_agreement_at_1": round(float(agree.mean()), 4)}


def emit(row: dict[str, Any]) -> dict[str, Any]:
    row = {"load": round(loadavg(), 2), **row}
    print(json.dumps(row), flush=True)
    return row


def bench_index(name: str, plan: Plan, sweep_key: str | None, sweep: list[int], extra: dict[str, Any],
                vecs: np.ndarray, labels: np.ndarray, queries: np.ndarray, exact_ids: np.ndarray,
                more: np.ndarray, args: argparse.Namespace, tmp: Path, tombstones: float = 0.0) -> list[dict]:
    n = len(vecs)
    ids = np.arange(n, dtype=np.int64)
    log(f"{name} n={n}: building {plan.factory}")
    with Meter() as mb:
        index = idx.create(plan, DIM)
        t = time.perf_counter()
        key = (n, plan.nlist)
        if plan.type == "ivf" and key in CENTROIDS:  # same coarse quantizer for every codec: train k-means once
            faiss.downcast_index(index).quantizer.add(CENTROIDS[key][0])
        plan = idx.train(index, plan, vecs)
        train_s = time.perf_counter() - t
        if plan.type == "ivf":
            if key in CENTROIDS:
                train_s += CENTROIDS[key][1]  # report the full training cost
            else:
                q = faiss.downcast_index(faiss.downcast_index(index).quantizer)
                CENTROIDS[key] = (q.reconstruct_n(0, q.ntotal), train_s)
        t = time.perf_counter()
        idx.add(index, ids, vecs)
        add_s = time.perf_counter() - t
    store = None
    exact_bpv = 0.0
    if plan.rerank:
        store = ExactStore([ExactStore.write_segment(tmp, 1, ids, vecs)], DIM)
        exact_bpv = store.nbytes() / n
    labels_of = lambda i: labels[i]  # noqa: E731  ids are positions
    rows = []
    is_flat = plan.type == "flat"
    n_lat = min(args.queries, 200) if is_flat and n >= 500_000 else args.queries
    runs: list[tuple[int | None, idx.Tombstones | None]] = [(v, None) for v in (sweep or [None])]
    if tombstones:  # same index, 1% of it removed (tombstones), at the plan's default parameters
        pick = np.random.default_rng(7).choice(n, int(n * tombstones), replace=False)
        runs.append((None, idx.Tombstones(pick)))
    for value, dead in runs:
        params = dict(extra)
        if sweep_key and value is not None:
            params[sweep_key] = value
        fn = lambda q: idx.search(index, q, K, plan, params, dead, store)  # noqa: E731
        with Meter() as ms:
            fn(queries[:8])  # warm up
            p50, p99, p99cpu = latency(fn, queries, n_lat)
            rate = qps(fn, queries, 1 if is_flat and n >= 500_000 else 3)
            _, got = fn(queries)
        truth = exact_ids if dead is None else exact_topk(vecs, queries, K, dead.ids)  # without the removed
        q = quality(got, truth, labels_of)
        if dead is not None:
            q["dead_returned"] = int(np.isin(got, dead.ids).sum())
        shown = {**{k: getattr(plan, k) for k in ("M", "efConstruction", "nlist") if getattr(plan, k)}, **params}
        if dead is not None:
            shown["tombstones"] = f"{tombstones:.0%}"
        config = ",".join(f"{k}={v}" for k, v in shown.items())
        rows.append(emit({
            "index": name + ("+tombstones" if dead is not None else ""), "factory": plan.factory, "config": config,
            "n": n, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "p99_cpu_ms": round(p99cpu, 3),
            "qps": round(rate, 1), **q, "bytes_per_vector": round(idx.memory_bytes_per_vector(index), 1),
            "exact_store_bytes_per_vector": round(exact_bpv, 1), "train_s": round(train_s, 2),
            "add_s": round(add_s, 2), "build_others_cores": round(mb.others, 2),
            "search_others_cores": round(ms.others, 2), "tombstones": len(dead) if dead is not None else 0,
        }))
    if len(more):
        with Meter():
            t = time.perf_counter()
            idx.add(index, np.arange(n, n + len(more), dtype=np.int64), more)
            add10k = time.perf_counter() - t
        for r in rows:
            r["add_10k_s"] = round(add10k, 3)
        emit({"index": name, "factory": plan.factory, "n": n, "add_10k_s": round(add10k, 3), "kind": "add"})
    del index, store
    gc.collect()
    return rows


def configs(n: int, args: argparse.Namespace) -> list[tuple[str, Plan, str | None, list[int], dict[str, Any], float]]:
    nl = auto_nlist(n)
    out: list[tuple[str, Plan, str | None, list[int], dict[str, Any], float]] = []
    if "flat" in args.types:
        out.append(("flat", Plan(type="flat", factory="Flat"), None, [], {}, 0.0))
    if "ivf" in args.types:
        for nlist in sorted({nl, *[int(v) for v in args.extra_nlist if int(v) * 39 <= n]}):
            probes = [p for p in args.nprobe if p <= nlist]
            out.append(("ivf-pq4fs+rerank", Plan(type="ivf", factory=f"IVF{nlist},{codec_factory('pq4fs', DIM)}", nlist=nlist,
                                                 nprobe=8, codec="pq4fs", rerank=10), "nprobe",
                        [p for p in args.nprobe_fs if p <= nlist], {"rerank": 10}, 0.0))
            out.append(("ivf-sq8+rerank", Plan(type="ivf", factory=f"IVF{nlist},SQ8", nlist=nlist, nprobe=8,
                                               codec="sq8", rerank=4), "nprobe", probes, {"rerank": 4}, 0.0))
            out.append(("ivf-sq8", Plan(type="ivf", factory=f"IVF{nlist},SQ8", nlist=nlist, nprobe=8, codec="sq8",
                                        rerank=4), "nprobe", probes[-2:], {"rerank": 0}, 0.0))
            if "ivf-flat" in args.types:
                out.append(("ivf-flat", Plan(type="ivf", factory=f"IVF{nlist},Flat", nlist=nlist, nprobe=8), "nprobe",
                            probes, {}, 0.0))
    if "auto" in args.types:
        from indexer.specs import parse_spec, plan_for

        plan = plan_for(parse_spec("auto"), n)
        out.append(("auto", plan, None, [], {}, 0.0))
    if "hnsw" in args.types:
        out.append(("hnsw", Plan(type="hnsw", factory="HNSW32,Flat", M=32, efConstruction=80, efSearch=128),
                    "efSearch", args.ef_search, {}, 0.01))
    return out


def flat_sweep(gen: Generator, args: argparse.Namespace) -> None:
    """Exact search latency at sizes between the main ones: where it stops being sub-millisecond."""
    for n in args.flat_sweep:
        vecs, labels, _ = gen.gallery(n)
        q = gen.queries(labels, 200)
        index = idx.create(Plan(type="flat", factory="Flat"), DIM)
        idx.add(index, np.arange(n, dtype=np.int64), vecs)
        fn = lambda x: idx.search(index, x, K)  # noqa: E731
        fn(q[:8])
        with Meter() as m:
            p50, p99, p99cpu = latency(fn, q, args.queries)
        emit({"index": "flat", "kind": "flat_sweep", "n": n, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
              "p99_cpu_ms": round(p99cpu, 3),
              "search_others_cores": round(m.others, 2)})


def markdown(rows: list[dict[str, Any]]) -> str:
    """Three tables: index types (per configuration), the Gallery API end to end, exact-search sweep."""
    add = {(r["n"], r["index"], r.get("factory")): r["add_10k_s"] for r in rows if r.get("kind") == "add"}
    head = ("| n | index | config | p50 ms | p99 ms | p99 CPU ms | QPS (batch 1024) | recall@1 | recall@10 | label@1 | "
            "RAM B/vec | exact store B/vec | build s | add 10k s | load |")
    out = [head, "|" + "|".join(["---:"] * 15) + "|"]
    for r in rows:
        if "p50_ms" not in r or r.get("kind"):
            continue
        a = r.get("add_10k_s", add.get((r["n"], r["index"].replace("+tombstones", ""), r.get("factory")), float("nan")))
        out.append(f"| {r['n']:,} | {r['index']} | {r.get('config', '')} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                   f"{r['p99_cpu_ms']:.3f} | {r['qps']:,.0f} | {r['recall_at_1']:.3f} | {r['recall_at_10']:.3f} | "
                   f"{r['label_agreement_at_1']:.3f} | {r['bytes_per_vector']:,.0f} | "
                   f"{r['exact_store_bytes_per_vector']:,.0f} | {r['train_s'] + r['add_s']:.1f} | {a:.2f} | "
                   f"{r['load']:.1f} |")
    gal = [r for r in rows if r.get("kind") == "gallery"]
    if gal:
        out += ["", "| n | gallery (Gallery API) | index | import s | open (mmap) s | RSS after open / 1k queries MB | "
                "first pass p50 / p99 ms | warm() s, then p50 / p99 ms | p50 ms | p99 ms | p99 CPU ms | label@1 | "
                "add 10k s | remove 1k s | removed returned | compact s | load |",
                "|" + "|".join(["---:"] * 17) + "|"]
        for r in gal:
            out.append(f"| {r['n']:,} | {r['index']} | {r['factory']} | {r['import_s']:.1f} | {r['open_mmap_s']:.2f} | "
                       f"{r['rss_open_mb']:.0f} / {r['rss_after_queries_mb']:.0f} | "
                       f"{r.get('cold_p50_ms', float('nan')):.3f} / {r.get('cold_p99_ms', float('nan')):.3f} | "
                       f"{r.get('warm_s', float('nan')):.2f}: {r.get('warmed_p50_ms', float('nan')):.3f} / "
                       f"{r.get('warmed_p99_ms', float('nan')):.3f} | "
                       f"{r['p50_ms']:.3f} | "
                       f"{r['p99_ms']:.3f} | {r['p99_cpu_ms']:.3f} | {r['label_agreement_at_1']:.3f} | "
                       f"{r['add_10k_s']:.2f} | {r['remove_1k_s']:.2f} | {r['removed_returned']} | "
                       f"{r.get('compact_s', float('nan')):.1f} | {r['load']:.1f} |")
    sweep = [r for r in rows if r.get("kind") == "flat_sweep"]
    if sweep:
        out += ["", "| n | exact (flat) search | p50 ms | p99 ms | p99 CPU ms | load |",
                "|---:|---|---:|---:|---:|---:|"]
        out += [f"| {r['n']:,} | flat | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['p99_cpu_ms']:.3f} | "
                f"{r['load']:.1f} |" for r in sweep]
    return "\n".join(out)


READER = r"""
import json, os, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from indexer import Gallery, set_faiss_threads
set_faiss_threads(1)
def rss(key="VmRSS:"):
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(key))
q = np.load(sys.argv[3])
import pyarrow.dataset  # noqa: F401  (lazily imported by the first parquet read: not the gallery's memory)
base = rss()
t = time.perf_counter()
g = Gallery.open(sys.argv[2], mmap=True)
open_s = time.perf_counter() - t
after_open = rss()
t = time.perf_counter()
Gallery.open(sys.argv[2], mmap=True)
reopen_s = time.perf_counter() - t
def timed_pass():
    wall, cpu = [], []
    for i in range(len(q)):
        t, c = time.perf_counter(), time.thread_time()
        g.search(q[i:i + 1], 10)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - t)
    return np.asarray(wall) * 1e3, np.asarray(cpu) * 1e3
# Pass 1 right after opening: the memory-mapped lists and exact vectors are faulted in as queries
# touch them (what the first queries of a fresh process see).  Pass 2: the same queries again (a
# long-running service's steady state).  Then a fresh open, Gallery.warm(), and one pass.
cw, cc = timed_pass()
w, c = timed_pass()
rss_after, rss_anon, rss_file = rss(), rss("RssAnon:"), rss("RssFile:")
del g
g = Gallery.open(sys.argv[2], mmap=True)
warm = g.warm()
ww, wc = timed_pass()
_, ids = g.search(q, 10)
np.save(sys.argv[4], ids)
print(json.dumps({"open_s": open_s, "reopen_s": reopen_s, "rss_open_mb": after_open - base,
                  "rss_after_queries_mb": rss_after - base, "rss_anon_mb": rss_anon, "rss_file_mb": rss_file,
                  "cold_p50_ms": float(np.percentile(cw, 50)), "cold_p99_ms": float(np.percentile(cw, 99)),
                  "warm_s": warm["seconds"], "warmed_p50_ms": float(np.percentile(ww, 50)),
                  "warmed_p99_ms": float(np.percentile(ww, 99)),
                  "p50_ms": float(np.percentile(w, 50)), "p99_ms": float(np.percentile(w, 99)),
                  "p99_cpu_ms": float(np.percentile(c, 99)), "memory_mapped": g.stats()["memory_mapped"]}))
"""


def bench_gallery(vecs: np.ndarray, labels: np.ndarray, queries: np.ndarray, exact_ids: np.ndarray,
                  more: np.ndarray, more_labels: np.ndarray, tmp: Path, spec: str) -> list[dict[str, Any]]:
    """The Gallery API end to end for ``spec``: import, open (mmap, separate process), search, add 10k
    (near-duplicate check + atomic commit), remove 1k (never returned), compact."""
    import subprocess

    from indexer import EncoderInfo, Gallery

    n = len(vecs)
    enc = EncoderInfo("bench-features", "b" * 64, DIM)
    path = tmp / f"gallery-{spec.replace(':', '_')}-{n}"
    names = np.asarray([f"type{int(v)}" for v in labels], dtype=object)
    log(f"gallery {spec} n={n}: import")
    g = Gallery.create(path, enc, index_spec=spec)
    with Meter() as m_imp:
        g.add_vectors(vecs, names.tolist(), encoder=enc, check_near_duplicates=False)
    plan = g.plan
    st = g.stats()
    del g
    gc.collect()
    np.save(tmp / "q.npy", queries)
    proc = subprocess.run([sys.executable, "-c", READER, str(Path(__file__).resolve().parents[1]), str(path),
                           str(tmp / "q.npy"), str(tmp / "ids.npy")], capture_output=True, text=True, check=True)
    reader = json.loads(proc.stdout)
    got = np.load(tmp / "ids.npy")  # item ids = row numbers (imported in order into a new gallery)
    q = quality(got, exact_ids, lambda i: labels[i])
    log(f"gallery {spec} n={n}: add 10k")
    with Meter() as m_open:
        g = Gallery.open(path, mmap=False)
    with Meter() as m_add:
        r = g.add_vectors(more, [f"type{int(v)}" for v in more_labels], encoder=enc, force=True)
    gone = np.random.default_rng(3).choice(n, 1000, replace=False)
    with Meter() as m_rm:
        g.remove(ids=gone.tolist())
    _, after = g.search(vecs[gone], 10)
    dead_returned = int(np.isin(after, gone).sum())
    row = {
        "index": f"gallery:{spec}", "factory": plan.factory, "config": plan.reason, "n": n, "kind": "gallery",
        "search_tuning": {k: v for k, v in (st["search_tuning"] or {}).items() if k != "tried"},
        "import_s": round(m_imp.wall, 2), "open_mmap_s": round(reader["open_s"], 3),
        "reopen_mmap_s": round(reader["reopen_s"], 3),
        "rss_open_mb": round(reader["rss_open_mb"], 1),
        "rss_after_queries_mb": round(reader["rss_after_queries_mb"], 1),
        "rss_anon_mb": round(reader["rss_anon_mb"], 1), "rss_file_mb": round(reader["rss_file_mb"], 1),
        "open_write_s": round(m_open.wall, 2), "cold_p50_ms": round(reader["cold_p50_ms"], 3),
        "cold_p99_ms": round(reader["cold_p99_ms"], 3), "warm_s": round(reader["warm_s"], 3),
        "warmed_p50_ms": round(reader["warmed_p50_ms"], 3), "warmed_p99_ms": round(reader["warmed_p99_ms"], 3),
        "p50_ms": round(reader["p50_ms"], 3),
        "p99_ms": round(reader["p99_ms"], 3),
        "p99_cpu_ms": round(reader["p99_cpu_ms"], 3), **q, "bytes_per_vector": st["bytes_per_vector"],
        "exact_store_bytes_per_vector": (st["exact_store"] or {}).get("bytes_per_vector", 0),
        "index_file_bytes_per_vector": st["index_file_bytes_per_vector"], "add_10k_s": round(m_add.wall, 2),
        "add_10k_notes": r.notes, "add_10k_near_duplicates_accepted": len(r.near_duplicates),
        "remove_1k_s": round(m_rm.wall, 2), "removed_returned": dead_returned,
        "others_cores": round(m_add.others, 2),
    }
    if n <= 1_000_000:
        with Meter() as m_c:
            g.compact()
        row["compact_s"] = round(m_c.wall, 1)
    del g
    gc.collect()
    return [emit(row)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="Gallery sizes, comma-separated.")
    ap.add_argument("--queries", type=int, default=1000, help="Queries for latency and recall.")
    ap.add_argument("--types", default="flat,ivf,hnsw,auto",
                    help="Index families to run: flat, ivf (SQ8 with/without re-ranking), ivf-flat, hnsw, auto.")
    ap.add_argument("--extra-nlist", default="", help="More IVF nlist values to try, e.g. 1024,2048.")
    ap.add_argument("--nprobe", default="16,32,48,64,128", help="IVF-SQ8 nprobe values to sweep.")
    ap.add_argument("--nprobe-fs", default="32,64,128,192,256", help="IVF-PQ4fs nprobe values to sweep.")
    ap.add_argument("--ef-search", default="64,128,256,512", help="HNSW efSearch values to sweep.")
    ap.add_argument("--flat-sweep", default="10000,20000,30000,50000",
                    help="Sizes for the exact-search latency sweep ('' to skip).")
    ap.add_argument("--families", type=int, default=None, help="Rendered families (default all 30).")
    ap.add_argument("--gallery", default="auto",
                    help="Index specs to measure end to end through the Gallery API ('' to skip).")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "docretriever-bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", choices=("real", "uniform"), default="real",
                    help="real: types around rendered documents' features, noise from real variation; uniform: "
                         "cluster centres spread uniformly over the sphere (see UniformGenerator)")
    ap.add_argument("--from-jsonl", nargs="*", type=Path, default=None,
                    help="Only print the markdown tables of earlier runs' JSON lines (files are concatenated).")
    args = ap.parse_args()
    if args.from_jsonl is not None:
        rows = [json.loads(line) for f in args.from_jsonl for line in f.read_text().splitlines()
                if line.startswith("{")]
        print(markdown(rows))
        return
    args.types = [t for t in args.types.split(",") if t]
    args.extra_nlist = [v for v in args.extra_nlist.split(",") if v]
    args.flat_sweep = [int(v) for v in args.flat_sweep.split(",") if v]
    args.nprobe = [int(v) for v in args.nprobe.split(",") if v]
    args.nprobe_fs = [int(v) for v in args.nprobe_fs.split(",") if v]
    args.gallery = [v for v in args.gallery.split(",") if v]
    args.ef_search = [int(v) for v in args.ef_search.split(",") if v]
    idx.set_faiss_threads(1)
    log(f"load average {loadavg():.2f} on {os.cpu_count()} cores; faiss {faiss.__version__}, 1 thread")
    args.cache.mkdir(parents=True, exist_ok=True)
    anchors = real_anchors(args.cache, args.families) if args.shape == "real" else None
    rows: list[dict[str, Any]] = []
    if args.flat_sweep and anchors is not None:
        flat_sweep(Generator(anchors, args.seed + 99), args)
    for n in [int(s) for s in args.sizes.split(",") if s]:
        gen = Generator(anchors, args.seed + n) if anchors is not None else UniformGenerator(args.seed + n)
        vecs, labels, _ = gen.gallery(n)
        queries = gen.queries(labels, args.queries)
        more, more_labels = gen.more(10_000)
        log(f"n={n}: {len(np.unique(labels))} types; exact ground truth")
        exact_ids = exact_topk(vecs, queries, K)
        top1 = np.sum(vecs[exact_ids[:, 0]] * queries, 1)
        emit({"kind": "data", "shape": args.shape, "n": n, "types": int(len(np.unique(labels))),
              "queries": len(queries),
              "exact_top1_cosine_p50": round(float(np.median(top1)), 4),
              "exact_top1_top2_gap_p50": round(float(np.median(top1 - np.sum(vecs[exact_ids[:, 1]] * queries, 1))), 4)})
        with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
            for name, plan, key, sweep, extra, dead in configs(n, args):
                rows += bench_index(name, plan, key, sweep, extra, vecs, labels, queries, exact_ids, more, args,
                                    Path(tmp), dead)
            for spec in args.gallery:
                rows += bench_gallery(vecs, labels, queries, exact_ids, more, more_labels, Path(tmp), spec)
        del vecs, labels, queries
        gc.collect()
    print("\n" + markdown(rows))
    log(f"done; load average {loadavg():.2f}")


if __name__ == "__main__":
    main()
