"""Gallery index types (flat, hnsw, ivf, auto, faiss:<factory>): round trips, removal, training,
imports, per-query parameters, exact re-ranking, stats, memory-mapped opens.

Synthetic 16-d clustered vectors stand in for features; the tiny test model gives the encoder
identity (fingerprint) galleries are bound to.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import encoders
from indexer import EncoderMismatchError, Gallery, GalleryError, NearDuplicateError
from indexer import specs
from indexer.cli import cli
from indexer.export import export_parquet
from indexer.exact import MAX_SEGMENTS
from indexer.verify import verify

REPO = Path(__file__).resolve().parents[1]
DIM = 16


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return encoders.load(tiny_model_path)


def clustered(n: int, seed: int = 0, n_labels: int = 25, spread: float = 0.25) -> tuple[np.ndarray, list[str]]:
    """Unit vectors around ``n_labels`` random centres; label = centre."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).standard_normal((n_labels, DIM)).astype(np.float32)
    lab = rng.integers(0, n_labels, n)
    x = centres[lab] + spread * rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), [f"type{i:02d}" for i in lab]


def write_vectors(path: Path, vecs, labels, meta: dict[bytes, bytes] | None = None, fixed: bool = True) -> Path:
    if fixed:
        arr = np.asarray(vecs, np.float32)
        col = pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1), pa.float32()), arr.shape[1])
    else:
        col = pa.array([list(map(float, v)) for v in vecs], pa.list_(pa.float32()))
    t = pa.table({"label": pa.array(labels, pa.string()), "vector": col})
    if meta:
        t = t.replace_schema_metadata(meta)
    pq.write_table(t, str(path))
    return path


def meta_of(enc) -> dict[bytes, bytes]:
    return {b"docretriever.encoder.name": enc.name.encode(),
            b"docretriever.encoder.fingerprint": enc.fingerprint.encode(),
            b"docretriever.encoder.dim": str(enc.dim).encode()}


def run(*args, ok: bool = True):
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert (r.exit_code == 0) == ok, r.output
    return r


def make(tmp_path: Path, tiny, spec: str, params: dict | None = None, n: int = 600, seed: int = 0) -> Gallery:
    g = Gallery.create(tmp_path / "gal", tiny, index_spec=spec, index_params=params or {})
    x, labels = clustered(n, seed)
    g.add_vectors(x, labels, encoder=tiny, check_near_duplicates=False)
    return g


def never_returns(g: Gallery, gone: np.ndarray, queries: np.ndarray) -> bool:
    """Removed ids are absent from results, even when searching with their own vectors, k = all."""
    for k in (1, 10, g.count):
        _, ids = g.search(queries, k)
        if np.isin(ids, gone).any():
            return False
    return True


# (spec, params, plan type once 600 vectors are in, removal by tombstones?)
TYPES = [
    ("flat", {}, "flat", False),
    ("hnsw", {"M": 8, "efConstruction": 40}, "hnsw", True),
    ("hnsw", {"M": 8, "codec": "sq8"}, "hnsw", True),
    ("ivf", {"nlist": 8, "codec": "sq8"}, "ivf", False),
    ("ivf", {"nlist": 8, "codec": "flat"}, "ivf", False),
    ("auto", {"flat_max": 300, "nlist": 8, "codec": "sq8"}, "ivf", False),
    ("faiss:HNSW16,Flat", {}, "faiss", True),
    ("faiss:IVF8,SQ8", {}, "faiss", False),
]


@pytest.mark.parametrize("spec,params,kind,tombstones", TYPES, ids=[f"{s}{p}" for s, p, _, _ in TYPES])
def test_every_index_type_build_add_remove_search_round_trip(tmp_path, tiny, spec, params, kind, tombstones):
    g = make(tmp_path, tiny, spec, params)
    assert g.plan.type == kind and g.manifest["index_spec"] == spec and g.manifest["index"]["type"] == kind
    x, labels = clustered(600)
    scores, ids = g.search(x[:50], 5)
    assert (ids[:, 0] == np.arange(50)).mean() >= 0.95  # each vector finds itself
    np.testing.assert_allclose(scores[ids[:, 0] == np.arange(50), 0], 1.0, atol=1e-5)  # exact cosines
    more, more_labels = clustered(100, seed=1)
    r = g.add_vectors(more, more_labels, encoder=tiny, check_near_duplicates=False)
    assert r.added_ids == list(range(600, 700)) and g.count == 700
    gone = np.asarray(sorted(g.remove(ids=list(range(0, 40)) + [650])), np.int64)
    gone_label = g.remove(labels=["type03"])
    gone = np.concatenate([gone, gone_label])
    assert g.count == 700 - len(gone) and (g.tombstones > 0) == tombstones
    assert g.manifest["count"] == g.count and g.manifest["tombstones"] == g.tombstones
    everything = np.concatenate([x, more])
    assert never_returns(g, gone, everything[gone])
    reopened = Gallery.open(g.path)
    assert reopened.count == g.count and reopened.tombstones == g.tombstones
    assert never_returns(reopened, gone, everything[gone])
    assert verify(reopened, sample=0).ok, verify(reopened, sample=0).problems
    ids_live, vecs_live = reopened.vectors()  # exact vectors of the live items, whatever the codes
    np.testing.assert_allclose(vecs_live, everything[ids_live], atol=1e-6)
    g.compact()
    assert g.tombstones == 0 and g.count == 700 - len(gone) and never_returns(g, gone, everything[gone])
    _, ids = g.search(everything[ids_live[:20]], 1)
    assert (ids[:, 0] == ids_live[:20]).mean() >= 0.9


def test_default_ivf_codec_pq4fs_round_trip_with_exact_scores(tmp_path, tiny):
    """The default IVF codes (4-bit fast-scan PQ over pairs of dimensions): too few vectors to train
    its 16-centroid sub-quantizers means exact flat search; once trained, results are re-ranked to
    exact cosines, items find themselves, removed ids never return, and it survives reopen/compact."""
    small = make(tmp_path / "s", tiny, "ivf", {"nlist": 8}, n=600)
    assert small.plan.type == "flat" and "too few" in small.plan.reason
    g = make(tmp_path, tiny, "ivf", {"nlist": 8, "nprobe": 8}, n=1000)
    assert g.plan.codec == "pq4fs" and g.plan.factory == f"IVF8,PQ{DIM // 2}x4fs" and g.plan.rerank > 0
    x, _ = clustered(1000)
    scores, ids = g.search(x[:100], 5)
    assert (ids[:, 0] == np.arange(100)).mean() >= 0.99
    np.testing.assert_allclose(scores[:, 0], np.einsum("ij,ij->i", x[ids[:, 0]], x[:100]), atol=1e-5)
    raw, _ = g.search(x[:100], 5, params={"rerank": 0})
    assert np.abs(raw[:, 0] - 1.0).max() > 1e-3  # the codes alone are approximate: re-ranking matters
    gone = np.asarray(g.remove(ids=list(range(0, 1000, 7))), np.int64)
    assert never_returns(g, gone, x[gone])
    reopened = Gallery.open(g.path)
    assert never_returns(reopened, gone, x[gone]) and verify(reopened, sample=0).ok
    g.compact()
    assert never_returns(g, gone, x[gone]) and g.plan.codec == "pq4fs"


def test_hnsw_tombstones_survive_reopen_rollback_and_compact(tmp_path, tiny):
    g = make(tmp_path, tiny, "hnsw", {"M": 8})
    x, _ = clustered(600)
    index_file = g.manifest["index_file"]
    r = run("remove", g.path, "--id", 5, "--id", 6, "--label", "type07")
    assert "tombstones" in r.output and "indexer compact" in r.output
    g.reload()
    dead = np.asarray([5, 6] + [i for i, lab in enumerate(clustered(600)[1]) if lab == "type07"])
    assert g.tombstones == len(dead) and g.manifest["index_file"] == index_file  # no index rewrite for a removal
    assert never_returns(g, dead, x[dead])
    s = json.loads(run("stats", g.path, "--json").output)
    assert s["tombstones"] == len(dead) and s["stored_vectors"] == 600 and s["vectors"] == 600 - len(dead)
    run("compact", g.path)
    g.reload()
    assert g.tombstones == 0 and g.index.ntotal == 600 - len(dead) and never_returns(g, dead, x[dead])
    g.rollback()  # back to the tombstoned generation: still never returned
    assert g.tombstones == len(dead) and never_returns(Gallery.open(g.path), dead, x[dead])
    with pytest.raises(GalleryError, match="not in gallery"):
        g.remove(ids=[5])  # a tombstone is gone for good


def test_hnsw_sq8_tombstones_with_exact_store_segment_merges(tmp_path, tiny):
    g = make(tmp_path, tiny, "hnsw", {"M": 8, "codec": "sq8"})
    x, _ = clustered(600)
    dead = np.arange(0, 60)
    g.remove(ids=dead.tolist())
    for i in range(MAX_SEGMENTS + 1):  # forces a merge that keeps only live rows
        g.add_vectors(*clustered(3, seed=200 + i), encoder=tiny, check_near_duplicates=False)
    assert len(g.manifest["exact"]) < MAX_SEGMENTS and g.tombstones == 60
    assert never_returns(g, dead, x[dead]) and verify(g, sample=0).ok
    scores, ids = g.search(x[100:110], 3)
    np.testing.assert_allclose(scores, np.einsum("ijk,ik->ij", g.vectors()[1][np.searchsorted(g.vectors()[0], ids)],
                                                 x[100:110]), atol=1e-5)


def test_ivf_too_small_is_flat_trains_when_big_enough_and_retrains_past_factor(tmp_path, tiny):
    assert specs.IVF_RETRAIN_FACTOR == 2.0
    g = Gallery.create(tmp_path / "gal", tiny, index_spec="ivf",
                       index_params={"nlist": 8, "codec": "sq8"})  # trains from 312
    x, labels = clustered(1000)
    g.add_vectors(x[:200], labels[:200], encoder=tiny, check_near_duplicates=False)
    assert g.plan.type == "flat" and "too few to train" in g.plan.reason
    r = g.add_vectors(x[200:400], labels[200:400], encoder=tiny, check_near_duplicates=False)
    assert g.plan.type == "ivf" and g.plan.trained_on == 400 and any("index rebuilt" in n for n in r.notes)
    r = g.add_vectors(x[400:800], labels[400:800], encoder=tiny, check_near_duplicates=False)
    assert g.plan.trained_on == 400 and not any("rebuilt" in n for n in r.notes)  # 800 = 2x: grows in place
    r = g.add_vectors(x[800:], labels[800:], encoder=tiny, check_near_duplicates=False)
    assert g.plan.trained_on == 1000 and any("retrain" in n for n in r.notes)
    _, ids = g.search(x[:30], 1, params={"nprobe": 8})
    np.testing.assert_array_equal(ids[:, 0], np.arange(30))  # nprobe = nlist: exhaustive


def test_auto_picks_flat_below_threshold_ivf_above_with_hysteresis(tmp_path, tiny):
    auto = specs.parse_spec("auto")
    assert specs.plan_for(auto, specs.AUTO_FLAT_MAX).type == "flat"
    big = specs.plan_for(auto, specs.AUTO_FLAT_MAX + 1)
    assert big.type == "ivf" and big.codec == specs.IVF_DEFAULTS["codec"] and big.rerank > 0
    assert big.nprobe == specs.IVF_DEFAULTS["nprobe"] and big.factory.endswith(",PQ128x4fs")  # 256-d default
    assert specs.plan_for(auto, 10**6).nlist == specs.auto_nlist(10**6)
    g = make(tmp_path, tiny, "auto", n=200)  # the default threshold: exact search
    assert g.plan.type == "flat" and g.manifest["format_version"] == 1
    g2 = Gallery.create(tmp_path / "g2", tiny, index_spec="auto",
                        index_params={"flat_max": 300, "nlist": 8, "codec": "sq8"})
    x, labels = clustered(400)
    g2.add_vectors(x[:300], labels[:300], encoder=tiny, check_near_duplicates=False)
    assert g2.plan.type == "flat"
    g2.add_vectors(x[300:], labels[300:], encoder=tiny, check_near_duplicates=False)
    assert g2.plan.type == "ivf" and g2.manifest["format_version"] == 2
    g2.remove(ids=list(range(200)))  # 200 >= 300 * 0.5: stays IVF (no flip-flop at the threshold)
    assert g2.plan.type == "ivf"
    g2.remove(ids=list(range(200, 260)))  # 140 < 150: back to exact
    assert g2.plan.type == "flat" and g2.manifest["exact"] is None


def test_import_refuses_bad_rows_naming_them(tmp_path, tiny, tiny_model_path):
    x, labels = clustered(10)
    gal = tmp_path / "gal"
    bad = x.copy()
    bad[3, 0] = np.nan
    bad[7] *= 2.0
    r = run("import", gal, write_vectors(tmp_path / "bad.parquet", bad, labels), "--model", tiny_model_path, ok=False)
    assert "rows 3" in r.output and "NaN" in r.output and "rows 7" in r.output and "norm 2.0" in r.output
    assert not (gal / "manifest.json").exists()
    mixed = [list(v) for v in x]
    mixed[2], mixed[5] = mixed[2][:8], mixed[5] + [0.0]
    t = pa.table({"label": labels, "vector": pa.array(mixed, pa.list_(pa.float32()))})
    pq.write_table(t, str(tmp_path / "dims.parquet"))
    r = run("import", gal, tmp_path / "dims.parquet", "--model", tiny_model_path, ok=False)
    assert "wrong dimension in rows 2, 5" in r.output and "expected 16" in r.output
    r = run("import", gal, write_vectors(tmp_path / "nometa.parquet", x, labels), ok=False)
    assert "give --model" in r.output
    other = {b"docretriever.encoder.name": b"someone-else", b"docretriever.encoder.fingerprint": b"ab" * 32,
             b"docretriever.encoder.dim": b"16"}
    r = run("import", gal, write_vectors(tmp_path / "other.parquet", x, labels, other), "--model", tiny_model_path,
            ok=False)
    assert "someone-else" in r.output and tiny.fingerprint in r.output and "not comparable" in r.output
    run("import", gal, write_vectors(tmp_path / "good.parquet", x, labels, meta_of(tiny)))  # metadata binds it
    assert Gallery.open(gal).encoder_info["fingerprint"] == tiny.fingerprint
    r = run("import", gal, tmp_path / "other.parquet", ok=False)  # existing gallery: another encoder's vectors
    assert "someone-else" in r.output and tiny.fingerprint in r.output
    assert Gallery.open(gal).count == 10


def test_export_import_round_trip_keeps_vectors_labels_and_encoder(tmp_path, tiny, other_tiny_model_path):
    g = Gallery.create(tmp_path / "gal", tiny, index_spec="ivf", index_params={"nlist": 8})
    x, labels = clustered(600)
    g.add_vectors(x, labels, sha256=[f"{i:064x}" for i in range(600)], encoder=tiny, check_near_duplicates=False)
    export_parquet(g, tmp_path / "g.parquet")
    run("import", tmp_path / "copy", tmp_path / "g.parquet", "--index", "hnsw", "--param", "M=8")
    c = Gallery.open(tmp_path / "copy", tiny)
    assert c.count == g.count and c.plan.type == "hnsw" and c.label_counts() == g.label_counts()
    np.testing.assert_allclose(c.vectors()[1], g.vectors()[1], atol=1e-7)
    r = run("import", tmp_path / "copy", tmp_path / "g.parquet")  # same image hashes: all skipped
    assert "imported 0 vector(s)" in r.output and "already registered" in r.output
    with pytest.raises(EncoderMismatchError):
        Gallery.open(tmp_path / "copy", encoders.load(other_tiny_model_path))
    r = run("import", tmp_path / "x", tmp_path / "g.parquet", "--model", other_tiny_model_path, ok=False)
    assert "not comparable" in r.output


def test_per_query_search_params(tmp_path, tiny):
    g = make(tmp_path, tiny, "ivf", {"nlist": 16, "nprobe": 1, "codec": "flat"}, n=1200)
    x, _ = clustered(300, seed=5)
    ids_all, vecs = g.vectors()
    want = ids_all[np.argsort(-(x @ vecs.T), axis=1)[:, :5]]  # brute force
    _, one = g.search(x, 5)  # nprobe 1 (the gallery's default here) misses some
    _, full = g.search(x, 5, params={"nprobe": 16})  # every list: exact
    np.testing.assert_array_equal(full, want)
    assert (one != want).any()
    assert g.search(x, 5)[1].tolist() == one.tolist()  # the per-query value did not stick
    h = make(tmp_path / "h", tiny, "hnsw", {"M": 4, "efSearch": 1}, n=1200)
    _, lo = h.search(x, 5, params={"efSearch": 1})
    _, hi = h.search(x, 5, params={"efSearch": 400})
    assert (hi == want).mean() >= (lo == want).mean() and (hi == want).mean() > 0.95
    with pytest.raises(GalleryError, match="unknown search parameter 'nprob'"):
        g.search(x, 5, params={"nprob": 3})
    with pytest.raises(GalleryError, match="integer >= 1"):
        g.search(x, 5, params={"nprobe": 0})
    f = make(tmp_path / "f", tiny, "flat")
    assert f.search(x, 3, params={"nprobe": 4, "efSearch": 9})[1].shape == (300, 3)  # not applicable: ignored


def test_rerank_gives_exact_cosines_for_sq8_codes(tmp_path, tiny):
    g = make(tmp_path, tiny, "ivf", {"nlist": 8, "codec": "sq8"}, n=800)
    assert g.plan.rerank > 0 and g.stats()["exact_store"]["rows"] == 800
    ids_all, vecs = g.vectors()
    q, _ = clustered(100, seed=9)
    scores, ids = g.search(q, 10)
    exact_scores = np.einsum("ijk,ik->ij", vecs[ids], q)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    raw, raw_ids = g.search(q, 10, params={"rerank": 0})  # SQ8 approximations
    assert np.abs(raw - np.einsum("ijk,ik->ij", vecs[raw_ids], q)).max() > 1e-4
    # many small adds: exact-store segments are merged, never more than MAX_SEGMENTS
    for i in range(MAX_SEGMENTS + 2):
        more, labels = clustered(5, seed=100 + i)
        g.add_vectors(more, labels, encoder=tiny, check_near_duplicates=False)
    assert len(g.manifest["exact"]) <= MAX_SEGMENTS
    assert set(g.manifest["exact"][0].values()) & {p.name for p in g.path.iterdir()}
    ids_all, vecs = g.vectors()
    assert len(ids_all) == 800 + 5 * (MAX_SEGMENTS + 2) and verify(g, sample=0).ok


@pytest.mark.parametrize("codec", ["sq8", "pq4fs"])
def test_near_duplicates_are_refused_on_approximate_indexes(tmp_path, tiny, codec):
    """PQ codes underestimate cosines by far more than SQ8 (~0.06, up to ~0.2): the check must
    still find a near-duplicate through them."""
    g = make(tmp_path, tiny, "ivf", {"nlist": 8, "codec": codec}, n=700)
    assert g.plan.codec == codec and g.plan.type == "ivf"
    x, labels = clustered(700)
    twin = x[10] + 1e-3 * np.ones(DIM, np.float32)
    twin /= np.linalg.norm(twin)
    other = "type99"
    with pytest.raises(NearDuplicateError, match="id 10"):
        g.add_vectors(twin[None], [other], encoder=tiny)
    assert g.add_vectors(twin[None], [labels[10]], encoder=tiny).added == 1  # same label: fine
    r = g.add_vectors(twin[None], [other], encoder=tiny, force=True)
    assert r.added == 1 and r.near_duplicates


def test_stats_report_type_parameters_and_bytes_per_vector(tmp_path, tiny):
    g = make(tmp_path, tiny, "ivf", {"nlist": 8, "codec": "sq8"})
    s = json.loads(run("stats", g.path, "--json").output)
    assert (s["vectors"], s["index_spec"], s["index_type"], s["tombstones"]) == (600, "ivf", "ivf", 0)
    assert s["index"]["nlist"] == 8 and s["index"]["nprobe"] == specs.IVF_DEFAULTS["nprobe"]
    assert s["index"]["factory"] == "IVF8,SQ8" and s["search_defaults"]["rerank"] == specs.IVF_DEFAULTS["rerank"]
    assert s["bytes_per_vector"] == DIM + 8  # one byte per dimension + the id
    assert s["exact_store"]["rows"] == 600 and s["exact_store"]["bytes_per_vector"] >= DIM * 4 + 8
    text = run("stats", g.path).output
    for key in ("index type:", "IVF8,SQ8", f"nprobe={specs.IVF_DEFAULTS['nprobe']}", "bytes per vector:",
                "exact vectors:", "tombstones:"):
        assert key in text


def test_build_cli_records_index_spec_and_refuses_bad_ones(tmp_path, tiny_model_path):
    from indexer_testdata import make_register

    reg = make_register(tmp_path / "reg", {"a": 2, "b": 2})
    run("build", reg, "-o", tmp_path / "g", "--model", tiny_model_path, "--index", "auto", "--param", "nprobe=32")
    m = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert m["index_spec"] == "auto" and m["index_params"] == {"nprobe": 32} and m["index"]["type"] == "flat"
    r = run("build", reg, "-o", tmp_path / "h", "--model", tiny_model_path, "--index", "HNSW32", ok=False)
    assert "faiss:<factory string>" in r.output
    r = run("build", reg, "-o", tmp_path / "h", "--model", tiny_model_path, "--index", "hnsw", "--param", "nlist=3",
            ok=False)
    assert "'nlist' does not apply to index 'hnsw'" in r.output
    r = run("build", reg, "-o", tmp_path / "h", "--model", tiny_model_path, "--index", "faiss:Bogus99", ok=False)
    assert "Bogus99" in r.output and not (tmp_path / "h" / "manifest.json").exists()


MMAP_SCRIPT = r"""
import sys, numpy as np
from indexer import Gallery
import encoders
enc = encoders.load(sys.argv[2])
for name in sys.argv[3:]:
    path = sys.argv[1] + "/" + name
    g = Gallery.open(path, enc, mmap=True)
    assert g.stats()["memory_mapped"], name
    ids, vecs = g.vectors()
    assert g.search(vecs[:5], 1)[1][:, 0].tolist() == ids[:5].tolist()
    g.remove(ids=[int(ids[0])])  # writes reload the index unmapped: an add/remove on a mapped one aborts
    assert not g.stats()["memory_mapped"] and g.count == 599
    g = Gallery.open(path, enc, mmap=True)
    v = vecs[1:3] * 0.5 + vecs[3:5] * 0.5
    g.add_vectors(v / np.linalg.norm(v, axis=1, keepdims=True), ["new", "new"], check_near_duplicates=False)
    assert not g.stats()["memory_mapped"] and g.count == 601
    again = Gallery.open(path, mmap=True)
    assert again.stats()["memory_mapped"] and again.count == 601
    _, got = again.search(vecs[:5], 3)
    assert got[1:, 0].tolist() == ids[1:5].tolist() and not (got == ids[0]).any()
print("ok")
"""


def test_memory_mapped_opens_search_and_writes_reload_unmapped(tmp_path, tiny, tiny_model_path):
    for spec, params in (("flat", {}), ("ivf", {"nlist": 8}), ("hnsw", {"M": 8})):
        Gallery.create(tmp_path / spec, tiny, index_spec=spec, index_params=params).add_vectors(
            *clustered(600), encoder=tiny, check_near_duplicates=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", MMAP_SCRIPT, str(tmp_path), str(tiny_model_path), "flat", "ivf",
                           "hnsw"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_retriever_passes_search_params_to_the_gallery(tmp_path, tiny_model_path):
    """Retriever(search_params=...) reaches Gallery.search; a bad parameter name is refused there."""
    import encoders
    from retriever import Retriever

    enc = encoders.load(tiny_model_path)
    calls = []

    class Spy:
        manifest = {"count": 2, "labels": 2}
        calibration = None

        def search(self, feats, k, params=None):
            calls.append(params)
            return np.tile(np.array([[0.9, 0.1]], np.float32), (len(feats), 1)), np.tile(np.array([[0, 1]]), (len(feats), 1))

        def labels_of(self, ids):
            return np.array([["a", "b"][i] for i in np.ravel(ids)], dtype=object).reshape(np.shape(ids))

    r = Retriever(Spy(), encoder=enc, threshold=0.5, top_k=1, search_params={"nprobe": 16})
    res = r.classify_features(np.ones((1, enc.dim), np.float32) / np.sqrt(enc.dim))
    assert res[0].label == "a" and calls and calls[0] == {"nprobe": 16}


def test_warm_faults_in_the_exact_store_and_changes_no_result(tmp_path, tiny):
    g = make(tmp_path, tiny, "ivf", {"nlist": 8, "codec": "sq8"})
    x, _ = clustered(600)
    before = g.search(x[:20], 5)
    w = g.warm()
    assert w["bytes"] == 600 * DIM * 4 and w["seconds"] >= 0
    after = g.search(x[:20], 5)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0])
    flat = make(tmp_path / "flat", tiny, "flat")
    assert flat.warm()["bytes"] == 0  # exact index: nothing beside it to warm
