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


def test_the_shipped_model_gives_its_blocks3_map_and_the_same_features(tmp_path):
    pytest.importorskip("onnx", reason="writing a model needs the onnx package (train/test extras)")
    from encoders.local import LITE0_BLOCKS3, add_local_output
    from indexer_testdata import make_image

    base = encoders.load()
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
