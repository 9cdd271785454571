"""`retriever run --engine ray` on a local Ray instance: same rows as the local engine, bad files cost one row."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import encoders
from bulk_helpers import THRESHOLD, build_gallery, write_scans, write_tiff
from retriever.bulk import run_bulk
from retriever.ray_engine import actor_cpus

ray = pytest.importorskip("ray", reason="needs the [ray] extra")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return encoders.load(tiny_model_path)


def test_actor_cpus_leave_room_for_the_feeding_tasks():
    assert actor_cpus(2, 2) == 0.5  # a pool of 2 full-CPU actors on 2 CPUs hung
    assert actor_cpus(64, 8) == 1.0
    assert actor_cpus(1, 1) == 0.5


def test_ray_engine_one_bad_file_costs_one_row_and_matches_local(local_ray, tiny, tmp_path):
    gallery = build_gallery(tiny, tmp_path)
    d = tmp_path / "in"
    good = write_scans(d, 30)
    write_tiff(d / "multi.tif", 2)
    (d / "scan-00007x.jpg").write_bytes(b"")  # empty file: read_images would abort the whole job
    (d / "scan-00015x.png").write_text("not an image")
    kw = dict(encoder=tiny, threshold=THRESHOLD, top_k=2, batch_size=4, workers=2, progress=False)
    s = run_bulk([str(d)], str(gallery.path), tmp_path / "ray.parquet", engine="ray", **kw)
    t = pq.read_table(tmp_path / "ray.parquet")
    errors = t.filter(pa.compute.is_valid(t.column("error")))
    assert sorted(Path(p).name for p in errors.column("path").to_pylist()) == ["scan-00007x.jpg", "scan-00015x.png"]
    ok = t.filter(pa.compute.is_null(t.column("error")))
    assert sorted(set(ok.column("path").to_pylist())) == sorted([str(p) for p in good] + [str(d / "multi.tif")])
    assert ok.num_rows == 32 and s["errors"] == 2 and s["rows"] == 34 and s["engine"] == "ray"
    run_bulk([str(d)], str(gallery.path), tmp_path / "local.parquet", engine="local", **kw)
    local = pq.read_table(tmp_path / "local.parquet")
    assert local.equals(t)  # same rows, same order, same values
    assert pq.read_schema(tmp_path / "ray.parquet").metadata[b"docretriever.model_fingerprint"].decode() == \
        tiny.fingerprint


def test_ray_and_local_engines_agree_column_for_column_with_search_parameters_and_a_label_filter(local_ray, tiny,
                                                                                               tmp_path):
    """The same job on both engines (an HNSW gallery, explicit efSearch, a label filter): every column equal."""
    import cv2

    from bulk_helpers import LABELS, scan
    from indexer.gallery import Gallery

    reg = tmp_path / "reg"
    for i, lab in enumerate(LABELS):
        (reg / lab).mkdir(parents=True)
        cv2.imwrite(str(reg / lab / "front.png"), scan(1000 + i))
    gallery = Gallery.build(reg, tmp_path / "g", tiny, index_spec="hnsw", force=True)
    d = tmp_path / "in"
    write_scans(d, 12)
    kw = dict(encoder=tiny, threshold=THRESHOLD, top_k=2, batch_size=4, workers=2, progress=False,
              search_params={"efSearch": 16}, labels=LABELS[:2])
    run_bulk([str(d)], str(gallery.path), tmp_path / "ray.parquet", engine="ray", **kw)
    run_bulk([str(d)], str(gallery.path), tmp_path / "local.parquet", engine="local", **kw)
    ray_t, local_t = pq.read_table(tmp_path / "ray.parquet"), pq.read_table(tmp_path / "local.parquet")
    assert ray_t.num_rows == 12 and ray_t.column_names == local_t.column_names
    for name in local_t.column_names:
        assert ray_t.column(name).equals(local_t.column(name)), name
    assert set(ray_t.column("label").to_pylist()) <= set(LABELS[:2])
    import json

    meta = json.loads(pq.read_schema(tmp_path / "ray.parquet").metadata[b"docretriever.bulk"])
    assert meta["search_params"] == {"efSearch": 16} and meta["labels"] == sorted(LABELS[:2])


def test_ray_engine_verifies_as_the_local_engine_does(local_ray, local_encoder, tmp_path, monkeypatch):
    """A gallery that verifies by registration: each Ray worker makes the pages' prints too, and the rows
    are the local engine's, every sibling capture given its own type."""
    import cv2

    from indexer.gallery import Gallery
    from test_gallery_pages import _sibling_register

    monkeypatch.setenv("DOCRETRIEVER_SELF_CALIBRATE", "1")
    root, captures = _sibling_register(tmp_path / "register")
    gallery = Gallery.build(root, tmp_path / "g", local_encoder, verify=True, force=True)
    d = tmp_path / "in"
    d.mkdir()
    for lab, img in captures.items():
        cv2.imwrite(str(d / f"{lab}.jpg"), img)
    kw = dict(encoder=local_encoder, top_k=2, batch_size=2, workers=2, progress=False)
    run_bulk([str(d)], str(gallery.path), tmp_path / "ray.parquet", engine="ray", **kw)
    run_bulk([str(d)], str(gallery.path), tmp_path / "local.parquet", engine="local", **kw)
    ray_t, local_t = pq.read_table(tmp_path / "ray.parquet"), pq.read_table(tmp_path / "local.parquet")
    assert ray_t.column_names == local_t.column_names and ray_t.num_rows == local_t.num_rows == 4
    for name in ("path", "page", "label", "top_k_ids", "error"):
        assert ray_t.column(name).to_pylist() == local_t.column(name).to_pylist(), name
    # The same verified scores (to float32 rounding: features from other batch compositions). They once differed
    # in the third decimal: the local engine's threads shared one CLAHE object, which is not thread-safe.
    for name in ("score", "margin"):
        assert np.allclose(ray_t.column(name).to_pylist(), local_t.column(name).to_pylist(), rtol=0, atol=1e-5), name
    assert sorted(zip((Path(p).stem for p in ray_t.column("path").to_pylist()), ray_t.column("label").to_pylist())) \
        == sorted((lab, lab) for lab in captures)
