"""Local-map re-ranking (issue 13): the model's second output, and the arithmetic that re-orders
a search's top-k by it."""
from __future__ import annotations

import numpy as np
import pytest

import encoders
from encoders.contract import LocalMap, ModelContract
from indexer.rerank import local_deltas, rerank


def test_contract_carries_the_local_map_and_refuses_a_bad_one():
    c = ModelContract(name="m", local=LocalMap("local", k=5, weight=2.4))
    back = ModelContract.from_json(c.to_json())
    assert back.local == LocalMap("local", 5, 2.4) and back == c
    assert ModelContract.from_json(ModelContract(name="m").to_json()).local is None  # older models: none
    with pytest.raises(ValueError, match="local.k"):
        LocalMap("local", k=1)
    with pytest.raises(ValueError, match="bad contract field 'local'"):
        ModelContract.from_json('{"name": "m", "local": {"output": "x", "bogus": 1}}')


def test_the_shipped_model_gives_its_blocks3_map_and_the_same_features(tmp_path, plain_encoder):
    pytest.importorskip("onnx", reason="writing a model needs the onnx package (train/test extras)")
    from encoders.local import LITE0_BLOCKS3, add_local_output
    from indexer_testdata import make_image

    base = plain_encoder  # the shipped network without its local output
    out = tmp_path / "with-local.onnx"
    contract = add_local_output(base.path, LITE0_BLOCKS3, out)
    enc = encoders.load(out)
    assert enc.has_local and not base.has_local and contract.local == enc.contract.local
    x = np.stack([enc.preprocess(make_image(t)) for t in ("invoice", "passport", "receipt")])
    feats, maps = enc.encode_batch(x, local=True)
    assert np.allclose(feats, base.encode_batch(x), atol=1e-6)  # the feature output is untouched
    assert maps.shape == (3, 12 * 12, 80) and maps.dtype == np.float16
    norms = np.linalg.norm(maps.astype(np.float32), axis=2)
    assert np.allclose(norms[norms > 0], 1.0, atol=2e-3)
    with pytest.raises(encoders.EncoderError, match="no local map"):
        base.encode_batch(x, local=True)
    with pytest.raises(ValueError, match="no value named"):
        add_local_output(base.path, "nope", tmp_path / "x.onnx")
    shipped = encoders.load()  # ships with that map and a re-ranked table beside the cosine one
    f2, m2 = shipped.encode_batch(x, local=True)
    assert np.allclose(f2, feats, atol=1e-6) and np.allclose(m2.astype(np.float32), maps.astype(np.float32), atol=1e-3)
    assert shipped.contract.local.threshold_table and shipped.contract.threshold_table
    int8 = encoders.load("default-int8")
    assert int8.has_local and int8.contract.local.threshold_table and int8.local_shape == shipped.local_shape


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _deltas_by_loop(q: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """The definition, one query at a time (scripts/ablate_local_rerank.py's local_scores)."""
    k = len(cands)
    off = np.array([np.mean([cands[i, c] @ cands[j, c] for i in range(k) for j in range(k) if i != j])
                    for c in range(cands.shape[1])])
    w = np.clip(1 - off, 0, None)
    local = np.array([(w * np.einsum("cd,cd->c", q, cands[i])).sum() / w.sum() for i in range(k)])
    return local - local.mean()


def test_local_deltas_follow_the_definition_and_ignore_padding():
    rng = np.random.default_rng(0)
    q = _unit(rng.standard_normal((4, 9, 6)).astype(np.float32))
    c = _unit(rng.standard_normal((4, 5, 9, 6)).astype(np.float32))
    got = local_deltas(q, c)
    for i in range(4):
        assert np.allclose(got[i], _deltas_by_loop(q[i], c[i]), atol=1e-5)
    assert np.allclose(got.sum(axis=1), 0, atol=1e-5)  # centred: only the order moves
    valid = np.ones((4, 5), bool)
    valid[:, 3:] = False  # a search that found 3 candidates
    part = local_deltas(q, c, valid)
    assert np.all(part[:, 3:] == 0)
    for i in range(4):
        assert np.allclose(part[i, :3], _deltas_by_loop(q[i], c[i, :3]), atol=1e-5)


def test_rerank_moves_the_candidate_whose_differing_cells_match():
    """Two siblings alike everywhere but one cell: the query that has the second one's cell wins it
    back even when its cosine put the first one ahead."""
    rng = np.random.default_rng(1)
    base = _unit(rng.standard_normal((16, 8)).astype(np.float32))
    a, b = base.copy(), base.copy()
    b[5] = _unit(rng.standard_normal(8).astype(np.float32))
    other = _unit(rng.standard_normal((16, 8)).astype(np.float32))
    maps = {10: a, 11: b, 12: other}
    query = b.copy()
    scores = np.array([[0.90, 0.89, 0.30, -3.4e38]], np.float32)
    ids = np.array([[10, 11, 12, -1]])
    s, i = rerank(scores, ids, query[None], lambda got: np.stack([maps[int(x)] for x in got]), weight=2.4)
    assert i[0].tolist() == [11, 10, 12, -1] and s[0, 0] > s[0, 1] and s[0, 3] == scores[0, 3]
    same_s, same_i = rerank(scores, ids, query[None], lambda got: np.stack([maps[int(x)] for x in got]), weight=0)
    assert same_i.tolist() == ids.tolist() and np.array_equal(same_s, scores)


# ---------------------------------------------------------------------------------------------- product
FAMILY = {f"form-{c}": 1 for c in "abcdef"}  # six types


def _register(root):
    from indexer_testdata import make_register

    return make_register(root / "register", FAMILY)


def _queries(enc, n: int = 6):
    from indexer_testdata import make_image

    imgs = [make_image(lab, variant=3) for lab in list(FAMILY)[:n]]
    return imgs, enc.encode_batch(np.stack([enc.preprocess(i) for i in imgs]), local=True)


def _expected(g, feats, maps, k):
    """The definition: cosine top-k over every exemplar, top `local.k` re-scored, rows re-sorted."""
    from indexer.rerank import rerank_top

    ids, vecs = g.vectors()
    sim = feats @ vecs.T
    order = np.argsort(-sim, axis=1, kind="stable")
    store = dict(zip(*g._s.local.lookup_all()))
    rec = g.manifest["local"]
    s, i = rerank_top(np.take_along_axis(sim, order, 1), ids[order], maps,
                      lambda got: np.stack([store[int(x)] for x in got]), rec["k"], rec["weight"])
    return s[:, :k], i[:, :k]


def test_a_gallery_built_by_a_local_model_reranks_its_searches(tmp_path, local_encoder):
    from indexer.gallery import Gallery

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    rec = g.manifest["local"]
    assert g.reranks and rec["k"] == local_encoder.contract.local.k and rec["shape"] == list(local_encoder.local_shape)
    assert sorted(g.local_ids().tolist()) == sorted(g.vectors()[0].tolist())
    assert g.stats()["local_store"]["rows"] == g.count
    from click.testing import CliRunner

    from indexer.cli import cli

    out = CliRunner().invoke(cli, ["stats", str(g.path)]).output
    assert f"top {rec['k']} by local maps" in out and f"{g.count} maps of 144x80" in out
    _, (feats, maps) = _queries(local_encoder)
    s, i = g.search(feats, 4, local=maps)
    es, ei = _expected(g, feats, maps, 4)
    assert np.array_equal(i, ei) and np.allclose(s, es, atol=1e-5)
    cos_s, cos_i = g.search(feats, 4)  # without maps: the cosine, as before
    assert np.allclose(cos_s, np.sort(feats @ g.vectors()[1].T, axis=1)[:, ::-1][:, :4], atol=1e-5)
    assert not np.allclose(s, cos_s)  # the re-ranked scores are not cosines
    with pytest.raises(Exception, match="local maps have shape"):
        g.search(feats, 4, local=maps[:, :10])


def test_local_maps_follow_every_write(tmp_path, local_encoder):
    from indexer.gallery import Gallery
    from indexer.verify import verify
    from indexer_testdata import write_image

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    extra = write_image(tmp_path / "new" / "form-g.png", "form-g")
    g.add([extra], label="form-g")
    assert g.reranks and len(g.local_ids()) == g.count == 7
    g.remove(labels=["form-a"])
    assert g.reranks and len(g.local_ids()) == 7  # removed rows stay until compaction (never returned)
    g.compact()
    assert sorted(g.local_ids().tolist()) == sorted(g.vectors()[0].tolist())
    assert len(g.manifest["local"]["segments"]) == 1
    before = g.generation
    g.rollback()
    g = Gallery.open(g.path, local_encoder)
    assert g.generation == before + 1 and len(g.local_ids()) == 7 and g.reranks
    rep = verify(g, local_encoder, sample=3)
    assert rep.ok, rep.problems
    _, (feats, maps) = _queries(local_encoder)
    s, i = g.search(feats, 3, local=maps)
    es, ei = _expected(g, feats, maps, 3)
    assert np.array_equal(i, ei) and np.allclose(s, es, atol=1e-5)


def test_imported_vectors_turn_reranking_off_and_say_so(tmp_path, local_encoder):
    from indexer.gallery import Gallery

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    _, (feats, _) = _queries(local_encoder, 1)
    res = g.add_vectors(feats, ["imported-type"], sources=["elsewhere.png"])
    assert not g.reranks and "local" not in g.manifest or g.manifest["local"] is None
    assert any("re-ranking turned off" in n for n in res.notes)
    g = Gallery.open(g.path, local_encoder)
    assert not g.reranks and g.local_ids() is None


def test_a_tampered_local_record_is_refused(tmp_path, local_encoder):
    import json

    from indexer.errors import GalleryCorruptError
    from indexer.gallery import Gallery

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    m = json.loads((g.path / "manifest.json").read_text())
    m["local"]["segments"][0]["vectors"] = "../../etc/passwd"
    (g.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(GalleryCorruptError, match="local.vectors"):
        Gallery.open(g.path)


def test_retriever_bulk_and_thresholds_use_the_reranked_score(tmp_path, local_encoder):
    from indexer.gallery import Gallery
    from retriever import Retriever, RetrieverError

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    r = Retriever(g, local_encoder, threshold=0.5)
    assert r.reranks and r.scoring == "reranked" and "re-ranked" in r.table.source  # the model's re-ranked table
    imgs, (feats, maps) = _queries(local_encoder)
    got = r.classify(imgs)
    es, ei = _expected(g, feats, maps, 1)
    assert [x.label for x in got] == g.labels_of(ei[:, 0]).tolist()
    assert np.allclose([x.score for x in got], es[:, 0], atol=1e-5)
    with pytest.raises(RetrieverError, match="local maps"):
        r.classify_features(feats)
    same = r.classify_features(feats, local=maps)
    assert [x.score for x in same] == pytest.approx([x.score for x in got], abs=1e-5)


def test_a_table_measured_on_the_other_score_is_set_aside():
    from encoders.contract import ModelContract, ThresholdRow
    from retriever.openset import RULES
    from retriever.thresholds import choose_operating_point

    contract = ModelContract(name="m", threshold_table=(ThresholdRow(1e-2, 0.9, 0.30),),
                             local=LocalMap("local", 5, 2.4, (ThresholdRow(1e-2, 0.95, 0.70),), "val"))
    own = {"status": "measured", "scoring": "cosine", "rule": RULES["cosine"].to_dict(),
           "table": [{"fpir": 1e-2, "threshold": 0.25, "dir": 0.8, "measured_fpir": 0.01, "measurable": True}]}
    op = choose_operating_point(contract, None, own, 6, scoring="cosine")
    assert op.kind == "fpir" and op.threshold == 0.25
    op = choose_operating_point(contract, None, own, 6, scoring="reranked")
    assert op.kind == "fpir-fallback" and op.threshold == 0.70 and "measure it again" in op.origin
    assert choose_operating_point(contract, None, None, 6, fpr=1e-2, scoring="cosine").threshold == 0.30


def test_self_calibration_of_a_reranking_gallery_scores_its_probes_the_same_way(tmp_path, local_encoder):
    from indexer.gallery import Gallery

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder, self_calibrate=True)
    rec = g.self_calibration
    assert rec["scoring"] == "reranked" and rec["probes_local_segments"]
    probes = g.probes()
    assert probes.local is not None and probes.local.shape == (len(probes), *local_encoder.local_shape)
    from retriever import Retriever

    assert Retriever(g, local_encoder).operating_point.kind == "fpir"  # its own table, same scoring
    g.add_vectors(probes.feats[:1], ["imported"])  # re-ranking off: re-measured on the cosine
    assert g.self_calibration["scoring"] == "cosine" and not g.self_calibration.get("probes_local_segments")


def test_bulk_run_and_service_answer_as_the_retriever_does(tmp_path, local_encoder):
    """The re-ranked scores travel through every path: `retriever run` and `POST /v1/classify`."""
    import cv2
    import pyarrow.parquet as pq

    from bulk_helpers import bulk
    from indexer.gallery import Gallery
    from retriever import Retriever

    from indexer_testdata import make_image

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    files = []
    for n in range(48):  # one-file batches on two worker threads: each batch must keep its own maps
        files.append(tmp_path / "in" / f"q{n:02d}.png")
        files[-1].parent.mkdir(exist_ok=True)
        cv2.imwrite(str(files[-1]), make_image(list(FAMILY)[n % len(FAMILY)], variant=n))
    ref = Retriever(g, local_encoder, threshold=0.5, top_k=2).classify(files)
    bulk([tmp_path / "in"], g, tmp_path / "res.parquet", local_encoder, top_k=2, workers=2, batch_size=1)
    t = pq.read_table(tmp_path / "res.parquet")
    assert t.column("label").to_pylist() == [r.label for r in ref]
    np.testing.assert_allclose(t.column("score").to_numpy(), [r.score for r in ref], atol=1e-5)
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from retriever.service import ServiceConfig, create_app

    with TestClient(create_app(ServiceConfig(g.path, local_encoder, threshold=0.5, top_k=2))) as c:
        res = c.post("/v1/classify", files=[("file", (f.name, f.read_bytes(), "image/png")) for f in files]).json()
    assert [x["label"] for x in res["results"]] == [r.label for r in ref]
    np.testing.assert_allclose([x["score"] for x in res["results"]], [r.score for r in ref], atol=1e-5)


def test_a_gallery_can_opt_out_of_reranking(tmp_path, local_encoder):
    from click.testing import CliRunner

    from indexer.cli import cli
    from indexer.gallery import Gallery

    reg = _register(tmp_path)
    res = CliRunner().invoke(cli, ["build", str(reg), "-o", str(tmp_path / "g"), "--no-rerank", "--model",
                                   str(local_encoder.path)])
    assert res.exit_code == 0, res.output
    g = Gallery.open(tmp_path / "g", local_encoder)
    assert not g.reranks and "local" not in g.manifest and not list(g.path.glob("local-*"))
    from retriever import Retriever

    assert Retriever(g, local_encoder, threshold=0.5).scoring == "cosine"


def test_leaving_a_type_out_searches_as_a_gallery_without_it(tmp_path, local_encoder):
    """Self-calibration's non-mated view: with re-ranking, dropping the own type from an answer is not
    the same as a gallery without it (its exemplar moved the others' scores); `exclude=` is."""
    import shutil

    from indexer.gallery import Gallery

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    _, (feats, maps) = _queries(local_encoder)
    own = list(FAMILY)[:len(feats)]
    s, i = g.search(feats, 4, local=maps, exclude=own)
    for row, lab in enumerate(own):
        shutil.copytree(g.path, tmp_path / f"without-{lab}")
        h = Gallery.open(tmp_path / f"without-{lab}", local_encoder)
        h.remove(labels=[lab])
        hs, hi = h.search(feats[row:row + 1], 4, local=maps[row:row + 1])
        assert i[row].tolist() == hi[0].tolist() and np.allclose(s[row], hs[0], atol=1e-5)
        assert lab not in g.labels_of(i[row]).tolist()
    full_s, full_i = g.search(feats, 5, local=maps)
    dropped = [[x for x, lab in zip(sc, g.labels_of(ids)) if lab != own[r]][:4] for r, (sc, ids) in
               enumerate(zip(full_s, full_i))]
    assert not np.allclose(np.asarray(dropped), s)  # the shortcut would have scored them differently


def test_an_explicit_threshold_may_exceed_one_on_a_reranking_gallery(tmp_path, local_encoder, plain_encoder):
    from indexer.gallery import Gallery
    from retriever import Retriever, RetrieverError

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    assert Retriever(g, local_encoder, threshold=1.4).threshold == 1.4  # re-ranked scores exceed 1
    with pytest.raises(RetrieverError, match="re-ranked score within"):
        Retriever(g, local_encoder, threshold=float("nan"))
    h = Gallery.build(_register(tmp_path / "p"), tmp_path / "h", plain_encoder)
    with pytest.raises(RetrieverError, match="not a cosine"):
        Retriever(h, plain_encoder, threshold=1.4)


def test_verify_re_encodes_local_maps_and_names_one_that_differs(tmp_path, local_encoder, monkeypatch):
    from indexer.gallery import Gallery
    from indexer.verify import verify

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    assert verify(g, local_encoder, sample=6).ok
    real = g.local_maps
    monkeypatch.setattr(g, "local_maps", lambda ids: real([int(i) ^ 1 for i in ids]))  # a neighbour's map
    rep = verify(g, local_encoder, sample=6)
    assert any("re-encoded local map differs" in p for p in rep.problems), rep.problems


@pytest.mark.parametrize("name", ["fast", "fast-int8"])
def test_the_fast_tier_ships_by_name_with_its_own_map_and_tables(tmp_path, name):
    """The fast tier (96 px, distilled from the default): loaded by name, its own 12 x 12 map and tables
    (not the default's), and a gallery it builds re-ranks and finds each registered image's own type."""
    import cv2

    from indexer.gallery import Gallery
    from retriever import Retriever

    enc, default = encoders.load(name), encoders.load()
    assert encoders.resolve_model(name) == encoders.shipped_models()[name]
    assert enc.contract.input_size == (96, 96) and enc.dim == default.dim and enc.fingerprint != default.fingerprint
    assert enc.has_local and enc.local_shape == (144, 40)  # blocks.2 at 96 px: 12 x 12 cells
    assert enc.contract.threshold_table and enc.contract.local.threshold_table
    assert enc.contract.local.threshold_table != default.contract.local.threshold_table
    g = Gallery.build(_register(tmp_path), tmp_path / "g", enc)
    assert g.reranks and g.manifest["local"]["shape"] == [144, 40]
    r = Retriever(g, enc)
    assert r.scoring == "reranked"
    files = sorted((tmp_path / "register").rglob("*.png"))
    got = r.classify([cv2.imread(str(p)) for p in files])
    assert [x.label for x in got] == [p.parent.name for p in files]
