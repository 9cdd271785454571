"""Search parameters tuned to the gallery (indexer/tune.py): the cheapest nprobe / efSearch that keeps
top-1 labels equal to exact search's on >= 0.99 of queries drawn from the gallery."""
from __future__ import annotations

import json

import numpy as np
import pytest

from indexer import tune
from indexer.gallery import Gallery
from indexer.importer import EncoderInfo


def clustered(n: int, centres: int, dim: int = 32, spread: float = 0.35, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Families of look-alike types: ``centres`` family centres, 8 types around each, exemplars around
    their type."""
    rng = np.random.default_rng(seed)
    fam = rng.normal(size=(centres, dim)).astype(np.float32)
    types = fam.repeat(8, axis=0) + 0.5 * rng.normal(size=(centres * 8, dim)).astype(np.float32)
    which = rng.integers(0, len(types), n)
    v = types[which] + spread * rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, [f"type{i}" for i in which]


ENC = EncoderInfo("vectors-test", "f" * 64, 32)


@pytest.mark.parametrize("spec,key", [("ivf", "nprobe"), ("hnsw", "efSearch")])
def test_an_approximate_gallery_tunes_its_search_to_the_target(tmp_path, spec, key):
    v, labels = clustered(6000, 60)
    g = Gallery.create(tmp_path / "g", ENC, index_spec=spec, index_params={"nlist": 64} if spec == "ivf" else None)
    g.add_vectors(v, labels, encoder=ENC, check_near_duplicates=False)
    rec = g.manifest["search_tuning"]
    assert rec["param"] == key and rec["reached"] and rec["agreement"] >= rec["aimed_at"] > tune.TARGET
    assert g.plan.search_defaults[key] == rec["value"]
    # the chosen value is the first of the tried ones that reaches the target: cheaper ones did not
    assert rec["tried"][-1][key] == rec["value"] and all(t["agreement"] < rec["aimed_at"] for t in rec["tried"][:-1])
    # and it holds for fresh queries of the same kind, through the gallery's own search
    q = tune._queries(v, 300, seed=7)
    ids, vecs = g.vectors()
    lab = g.labels_of(ids)
    exact = lab[np.argmax(q @ vecs.T, axis=1)]
    _, got = g.search(q, 10)
    assert np.mean(g.labels_of(got[:, 0]) == exact) >= tune.TARGET - 0.02
    assert g.stats()["search_tuning"] == rec


def test_a_parameter_the_user_set_is_kept_and_flat_is_not_tuned(tmp_path, runner):
    from indexer.cli import cli

    v, labels = clustered(3000, 30)
    g = Gallery.create(tmp_path / "g", ENC, index_spec="ivf", index_params={"nlist": 32, "nprobe": 3})
    g.add_vectors(v, labels, encoder=ENC, check_near_duplicates=False)
    assert g.plan.nprobe == 3 and "not tuned" in g.manifest["search_tuning"]["source"]
    f = Gallery.create(tmp_path / "f", ENC)
    f.add_vectors(v[:100], labels[:100], encoder=ENC, check_near_duplicates=False)
    assert f.manifest.get("search_tuning") is None
    r = runner.invoke(cli, ["stats", str(tmp_path / "g")])
    assert r.exit_code == 0 and "nprobe=3 (set by the user" in r.output
    r = runner.invoke(cli, ["stats", str(tmp_path / "g"), "--json"])
    assert json.loads(r.output)["search_tuning"]["value"] == 3
