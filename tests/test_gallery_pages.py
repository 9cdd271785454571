"""A gallery that verifies (`indexer build --verify`): it keeps every exemplar's page print through every
write, and every way of classifying (the Retriever, `retriever classify`, `retriever run`, `retriever serve`)
and of calibrating (self-calibration, `retriever calibrate`) scores on verified scores alike."""
from __future__ import annotations

import numpy as np

FAMILY = {f"form-{c}": 1 for c in "abcdef"}


def _register(root):
    from indexer_testdata import make_register

    return make_register(root / "register", FAMILY)


def test_page_prints_follow_every_write(tmp_path, local_encoder):
    from encoders import pageprint
    from indexer.gallery import Gallery
    from indexer.verify import verify
    from indexer_testdata import write_image

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder, verify=True)
    rec = g.manifest["pages"]
    assert g.verifies and rec["row_bytes"] == pageprint.row_bytes() and rec["weight"] == pageprint.WEIGHT
    st = g.stats()["pages_store"]
    assert st["rows"] == g.count == 6 and st["comparison"] == pageprint.LEARNED
    rows = g._s.pages.get(g.vectors()[0])
    assert rows.shape == (6, pageprint.row_bytes()) and all(len(pageprint.unpack(r).pts) > 0 for r in rows)
    extra = write_image(tmp_path / "new" / "form-g.png", "form-g")
    g.add([extra], label="form-g")
    assert g.verifies and g.stats()["pages_store"]["rows"] == g.count == 7
    g.remove(labels=["form-a"])
    g.compact()
    assert sorted(g._s.pages.ids.tolist()) == sorted(g.vectors()[0].tolist())
    before = g.generation
    g.rollback()
    g = Gallery.open(g.path, local_encoder)
    assert g.generation == before + 1 and g.verifies and g._s.pages.rows == 7
    rep = verify(g, local_encoder, sample=3)
    assert rep.ok, rep.problems


def test_imported_vectors_turn_verification_off(tmp_path, local_encoder):
    from indexer.gallery import Gallery

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder, verify=True)
    feats = g.vectors()[1][:1]
    res = g.add_vectors(feats * 1.0, ["imported-type"], sources=["elsewhere.png"], check_near_duplicates=False)
    assert not g.verifies and any("verification turned off" in n for n in res.notes)
    assert not Gallery.open(g.path, local_encoder).verifies


def test_a_gallery_without_verification_keeps_no_prints(tmp_path, local_encoder):
    from indexer.gallery import Gallery

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    assert not g.verifies and "pages" not in g.manifest and g.stats()["pages_store"] is None
    assert not any(p.name.startswith("pages-") for p in g.path.iterdir())
    assert np.isfinite(g.vectors()[1]).all()


def _sibling_register(root):
    """Four sibling pages (one template, one element changed in each) as a register, and a captured
    (warped, blurred, lit) image of each."""
    import cv2
    from test_pageprint import _page, _warp

    base = _page(3)
    sibs = {"form-base": base.copy(), "form-block": base.copy(), "form-blank": base.copy(), "form-marks": base.copy()}
    cv2.rectangle(sibs["form-block"], (60, 560), (200, 640), 20, -1)
    sibs["form-blank"][40:120, 300:480] = 235
    for i in range(4):
        cv2.circle(sibs["form-marks"], (330 + 30 * i, 660), 9, 30, -1)
    for lab, img in sibs.items():
        (root / lab).mkdir(parents=True)
        cv2.imwrite(str(root / lab / "specimen.png"), img)
    captures = {lab: cv2.cvtColor(_warp(img, seed=5), cv2.COLOR_GRAY2BGR) for lab, img in sibs.items()}
    return root, captures


def test_a_verifying_search_moves_the_reranked_top_by_registration(tmp_path, local_encoder):
    from encoders import pageprint
    from indexer.gallery import Gallery
    from indexer.rerank import verify_top

    root, captures = _sibling_register(tmp_path / "register")
    g = Gallery.build(root, tmp_path / "g", local_encoder, verify=True, force=True)  # siblings: near-copies to the encoder
    labels = list(captures)
    imgs = [captures[lab] for lab in labels]
    feats, maps = local_encoder.encode_batch(np.stack([local_encoder.preprocess(i) for i in imgs]), local=True)
    prints = [pageprint.of_image(i, keep_gray=True) for i in imgs]
    rs, ri = g.search(feats, 4, local=maps)                  # re-ranked, as before
    vs, vi = g.search(feats, 4, local=maps, pages=prints)    # then verified
    rec = g.manifest["pages"]
    assert rec["comparison"] == pageprint.LEARNED  # a gallery built now verifies with the learned comparison
    es, ei = verify_top(rs, ri, prints, g._s.pages.get, rec["k"], rec["weight"], rec["keypoints"], rec["comparison"])
    assert np.array_equal(vi, ei) and np.allclose(vs, es, atol=1e-6)
    assert not np.allclose(vs, rs)  # registration moved the scores
    assert list(g.labels_of(vi[:, 0])) == labels  # each capture is verified as its own type
    # its own type gains on its siblings: the lead of the right type grows
    lead = lambda s, i: [s[r, 0] - s[r, 1] if g.labels_of(i[r, :1])[0] == labels[r] else -1 for r in range(4)]  # noqa: E731
    assert sum(lead(vs, vi)) > sum(lead(rs, ri))
    assert np.array_equal(g.search(feats, 4, local=maps, pages=prints)[0], vs)  # the same verdict every time


def test_a_verifying_gallery_calibrates_and_classifies_on_verified_scores(tmp_path, local_encoder, monkeypatch):
    import cv2
    import pytest

    from indexer.gallery import Gallery
    from retriever import Retriever
    from retriever.bulk_batch import BatchProcessor

    monkeypatch.setenv("DOCRETRIEVER_SELF_CALIBRATE", "1")
    root, captures = _sibling_register(tmp_path / "register")
    g = Gallery.build(root, tmp_path / "g", local_encoder, verify=True, force=True)
    sc = g.self_calibration
    assert sc["scoring"] == "verified" and sc["status"] == "measured"
    assert sc["probes_pages_segments"] and g.probes().pages is not None and len(g.probes().pages) == sc["probes"]
    r = Retriever(str(g.path), encoder=local_encoder)
    assert r.verifies and r.scoring == "verified" and "self-calibration" in r.threshold_origin
    paths = []
    for lab, img in captures.items():
        paths.append(tmp_path / "captures" / f"{lab}.jpg")
        paths[-1].parent.mkdir(exist_ok=True)
        cv2.imwrite(str(paths[-1]), img)
    res = r.classify(paths)
    assert [x.label for x in res] == list(captures)
    with pytest.raises(Exception, match="page prints"):
        r.classify_features(np.zeros((1, local_encoder.dim), np.float32) + 1 / np.sqrt(local_encoder.dim),
                            local=np.zeros((1, *local_encoder.local_shape), np.float16))
    # bulk jobs verify alike: the same labels and scores as classify
    table = BatchProcessor(r).process(list(range(len(paths))), [str(p) for p in paths])
    assert table.column("label").to_pylist() == [x.label for x in res]
    assert np.allclose(table.column("score").to_pylist(), [x.score for x in res], atol=1e-5)
    with pytest.raises(Exception, match="none for verified scores"):  # no model pair table for verified scores
        Retriever(str(g.path), encoder=local_encoder, fpr=1e-3)
    # a write re-measures on verified scores, with the stored prints of the probes
    g.remove(labels=["form-blank"])
    assert g.self_calibration["scoring"] == "verified" and g.probes().pages is not None


def test_the_cli_builds_a_verifying_gallery_and_classifies_with_it(tmp_path, local_encoder, monkeypatch):
    import cv2
    from click.testing import CliRunner

    from indexer.cli import cli as indexer_cli
    from retriever.cli import main as retriever_cli

    monkeypatch.setenv("DOCRETRIEVER_SELF_CALIBRATE", "1")
    root, captures = _sibling_register(tmp_path / "register")
    model = str(local_encoder.path)
    out = CliRunner().invoke(indexer_cli, ["build", str(root), "-o", str(tmp_path / "g"), "--model", model, "--force",
                                           "--verify"])
    assert out.exit_code == 0, out.output
    stats = CliRunner().invoke(indexer_cli, ["stats", str(tmp_path / "g")]).output
    assert "verified by registration" in stats and "4 page prints" in stats
    (tmp_path / "caps").mkdir()
    for lab, img in captures.items():
        cv2.imwrite(str(tmp_path / "caps" / f"{lab}.jpg"), img)
    res = CliRunner().invoke(retriever_cli, ["classify", str(tmp_path / "caps"), "--gallery", str(tmp_path / "g"),
                                             "--model", model])
    assert res.exit_code == 0, res.output
    assert "verified by registration" in res.output.splitlines()[0]
    for lab in captures:
        assert any(line.split()[0].endswith(f"{lab}.jpg") and line.split()[1] == lab
                   for line in res.output.splitlines() if line.strip() and not line.startswith("#")), res.output
    bulk = CliRunner().invoke(retriever_cli, ["run", str(tmp_path / "caps"), "--gallery", str(tmp_path / "g"),
                                              "--model", model, "-o", str(tmp_path / "out.parquet")])
    assert bulk.exit_code == 0, bulk.output
    import pyarrow.parquet as pq

    out = pq.read_table(tmp_path / "out.parquet")
    assert sorted(zip((p.rsplit("/", 1)[-1] for p in out.column("path").to_pylist()), out.column("label").to_pylist())) \
        == sorted((f"{lab}.jpg", lab) for lab in captures)


def test_the_service_verifies_as_classify_does(tmp_path, local_encoder, monkeypatch):
    import cv2
    import pytest

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from indexer.gallery import Gallery
    from retriever import Retriever
    from retriever.service import ServiceConfig, create_app

    monkeypatch.setenv("DOCRETRIEVER_SELF_CALIBRATE", "1")
    root, captures = _sibling_register(tmp_path / "register")
    g = Gallery.build(root, tmp_path / "g", local_encoder, verify=True, force=True)
    blobs = [(f"{lab}.jpg", cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
             for lab, img in captures.items()]
    want = Retriever(str(g.path), encoder=local_encoder).classify([b for _, b in blobs])
    assert [x.label for x in want] == list(captures)  # verification gets all four siblings right
    with TestClient(create_app(ServiceConfig(g.path, local_encoder, poll_s=60))) as c:
        got = c.post("/v1/classify", files=[("file", (n, b, "image/jpeg")) for n, b in blobs]
                     + [("file", ("tiny.png", cv2.imencode(".png", np.full((4, 4, 3), 200, np.uint8))[1].tobytes(),
                                  "image/png"))])
        assert got.status_code == 200, got.text
        rows = got.json()["results"]
        assert [r["label"] for r in rows[:4]] == list(captures)
        assert np.allclose([r["score"] for r in rows[:4]], [x.score for x in want], atol=1e-5)
        assert [r["accepted"] for r in rows[:4]] == [x.accepted for x in want]
        assert rows[4]["error"] and rows[4].get("label") is None  # a page too small to print is that row's error
        emb = c.post("/v1/embed", files=[("file", blobs[0][0:1] + (blobs[0][1], "image/jpeg"))]).json()["results"][0]
        assert len(emb["vector"]) == local_encoder.dim  # embedding needs no print


def test_a_user_calibration_of_a_verifying_gallery_is_on_verified_scores(tmp_path, local_encoder, monkeypatch):
    import cv2

    from indexer.gallery import Gallery
    from retriever import Retriever
    from retriever.calibrate import calibrate_gallery
    from test_pageprint import _warp

    monkeypatch.setenv("DOCRETRIEVER_SELF_CALIBRATE", "0")
    root, _ = _sibling_register(tmp_path / "register")
    labelled = tmp_path / "labelled"
    for lab in ("form-base", "form-block", "form-blank", "form-marks"):
        (labelled / lab).mkdir(parents=True)
        page = cv2.imread(str(root / lab / "specimen.png"), cv2.IMREAD_GRAYSCALE)
        for seed in (5, 6, 7):
            cv2.imwrite(str(labelled / lab / f"{seed}.jpg"), cv2.cvtColor(_warp(page, seed), cv2.COLOR_GRAY2BGR))
    plain = Gallery.build(root, tmp_path / "plain", local_encoder, force=True)
    g = Gallery.build(root, tmp_path / "g", local_encoder, verify=True, force=True)
    rec_plain = calibrate_gallery(str(plain.path), str(labelled), local_encoder)
    rec = calibrate_gallery(str(g.path), str(labelled), local_encoder)
    assert rec_plain["scoring"] == "reranked" and rec["scoring"] == "verified"
    # the siblings the re-ranked scores confuse, verification tells apart: the calibration measured verified scores
    assert rec_plain["top1_accuracy"] < 1.0 and rec["top1_accuracy"] == 1.0
    r = Retriever(str(g.path), encoder=local_encoder, fpr=0.1)
    assert r.verifies and "user calibration" in r.threshold_origin
    paths = sorted(labelled.rglob("*.jpg"))
    assert [x.label for x in r.classify(paths)] == [p.parent.name for p in paths]
    # a capture too small to print is named, and nothing is measured (the stored calibration stays)
    import pytest

    from retriever.calibrate import CalibrationError

    cv2.imwrite(str(labelled / "form-base" / "tiny.png"), np.full((5, 40, 3), 200, np.uint8))
    with pytest.raises(CalibrationError, match="tiny.png"):
        calibrate_gallery(str(g.path), str(labelled), local_encoder)
    assert Gallery.open(g.path).calibration["created_at"] == rec["created_at"]


def test_a_user_calibration_holds_one_batch_of_prints_at_a_time(tmp_path, local_encoder, monkeypatch):
    """Captures are scored as they are encoded: a verifying gallery's calibration keeps at most one batch of
    page prints alive (~250 KB each), and measures what scoring them all at once measures."""
    import gc
    import weakref

    import cv2

    from encoders import pageprint
    from indexer.gallery import Gallery
    from retriever import calibrate as C
    from test_pageprint import _warp

    monkeypatch.setenv("DOCRETRIEVER_SELF_CALIBRATE", "0")
    root, _ = _sibling_register(tmp_path / "register")
    labelled = tmp_path / "labelled"
    for lab in ("form-base", "form-block", "form-blank", "form-marks", "unknown"):
        (labelled / lab).mkdir(parents=True)
        page = cv2.imread(str(root / ("form-base" if lab == "unknown" else lab) / "specimen.png"), cv2.IMREAD_GRAYSCALE)
        for seed in (5, 6, 7):
            img = _warp(page, seed)
            if lab == "unknown":
                img = cv2.rectangle(img.copy(), (10 + 20 * seed, 40), (60 + 20 * seed, 90), 0, -1)
            cv2.imwrite(str(labelled / lab / f"{seed}.jpg"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    g = Gallery.build(root, tmp_path / "g", local_encoder, verify=True, force=True)

    refs: list[weakref.ref] = []
    made = pageprint.of_image

    def tracked(*a, **kw):
        p = made(*a, **kw)
        refs.append(weakref.ref(p))
        return p

    most = []
    search = Gallery.search

    def counting(self, *a, **kw):
        gc.collect()
        most.append(sum(r() is not None for r in refs))
        return search(self, *a, **kw)

    monkeypatch.setattr(pageprint, "of_image", tracked)
    monkeypatch.setattr(Gallery, "search", counting)
    small = C.calibrate_gallery(str(g.path), str(labelled), local_encoder, batch_size=4)
    assert most and max(most) <= 4  # 15 captures, never more than one batch of prints alive
    most.clear()
    whole = C.calibrate_gallery(str(g.path), str(labelled), local_encoder, batch_size=64)
    assert max(most) == 15
    for key in ("table", "n_pos", "n_neg", "auroc", "top1_accuracy", "identification"):
        assert small[key] == whole[key], key
    drop = lambda rows: [{k: v for k, v in r.items() if k != "source"} for r in rows]  # noqa: E731 - source has the time
    assert drop(small["open_set"]["table"]) == drop(whole["open_set"]["table"])
    assert small["n_unknown_queries"] == 3 and small["open_set"]["n_leave_one_out"] == 12


def test_a_write_re_verifies_only_the_probes_whose_candidates_changed(tmp_path, local_encoder, monkeypatch):
    """Self-calibration remembers each probe's verified deltas by candidate ids: a write verifies again only
    probes whose candidates changed, and measures exactly what verifying every probe afresh measures."""
    import shutil

    import cv2

    from encoders import pageprint
    from indexer.gallery import Gallery

    from indexer_testdata import make_register

    monkeypatch.setenv("DOCRETRIEVER_SELF_CALIBRATE", "1")
    root, _ = _sibling_register(tmp_path / "register")
    make_register(root, {f"other-{i}": 1 for i in range(8)})  # types a new sibling does not come near
    g = Gallery.build(root, tmp_path / "a", local_encoder, verify=True, force=True)
    sc = g.self_calibration
    assert sc["probes_verified_file"] and sc["verify_memo"] == pageprint.memo_tag(pageprint.LEARNED)
    assert len(g.probes().verified) == sc["probes"]
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    new = tmp_path / "new.png"  # a fifth sibling: another block, registered as a new type
    img = cv2.imread(str(root / "form-base" / "specimen.png"))
    cv2.rectangle(img, (330, 40), (470, 120), (30, 30, 30), -1)
    cv2.imwrite(str(new), img)

    calls = []
    real = pageprint.verify_deltas

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(pageprint, "verify_deltas", counted)
    Gallery.open(tmp_path / "a", encoder=local_encoder).add([new], label="form-top")
    with_memo = len(calls)
    calls.clear()
    monkeypatch.setattr(pageprint, "memo_tag", lambda comparison: "another verification")  # remembered deltas lapse
    Gallery.open(tmp_path / "b", encoder=local_encoder).add([new], label="form-top")
    afresh = len(calls)
    a, b = (Gallery.open(tmp_path / x).self_calibration for x in "ab")
    assert a["table"] == b["table"] and a["top1_accuracy"] == b["top1_accuracy"]
    assert with_memo < afresh / 2, (with_memo, afresh)  # the old probes were not verified again
    assert b["verify_memo"] == "another verification"


def test_probe_pages_and_maps_are_appended_not_rewritten(tmp_path, local_encoder, monkeypatch):
    """A write keeps the probes' maps and grey pages already stored (append-only segments) and stores only the
    new probes' rows; removed probes' rows are dropped when dead rows outnumber live ones; a gallery whose
    probe pages were kept in one file (older) is read, and stored as a segment at its next write."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    import pytest

    from indexer.errors import GalleryCorruptError
    from indexer.gallery import Gallery

    from indexer_testdata import make_register

    monkeypatch.setenv("DOCRETRIEVER_SELF_CALIBRATE", "1")
    root = make_register(tmp_path / "register", {f"type-{i}": 1 for i in range(4)})
    g = Gallery.build(root, tmp_path / "g", local_encoder, verify=True, force=True)
    first = g.probes()
    sc = g.self_calibration
    (seg,) = sc["probes_pages_segments"]
    (lseg,) = sc["probes_local_segments"]
    stat = (g.path / seg["file"]).stat()
    new = make_register(tmp_path / "new", {"type-new": 1, "type-newer": 1, "type-newest": 1})
    g.add([new / "type-new" / "0.png"], label="type-new")
    g.add([new / "type-newer" / "0.png"], label="type-newer")
    sc = g.self_calibration
    assert [s["file"] for s in sc["probes_pages_segments"]][0] == seg["file"] and len(sc["probes_pages_segments"]) == 3
    assert len(sc["probes_local_segments"]) == 3 and sc["probes_local_segments"][0] == lseg
    assert (g.path / seg["file"]).stat().st_mtime_ns == stat.st_mtime_ns  # the first pages were not written again
    assert sum(s["rows"] for s in sc["probes_pages_segments"]) == sc["probes"]
    probes = g.probes()
    assert len(probes.pages) == len(probes.local) == sc["probes"]
    assert list(probes.pages[:len(first)]) == list(first.pages) and np.array_equal(probes.local[:len(first)], first.local)

    g.remove(labels=["type-0"])  # a few dead rows: kept in their segment, skipped on reading
    sc = g.self_calibration
    assert len(sc["probes_pages_segments"]) == 3 and sum(s["rows"] for s in sc["probes_pages_segments"]) > sc["probes"]
    left = g.probes()
    keep = probes.labels != "type-0"
    assert list(left.pages) == list(probes.pages[keep]) and np.array_equal(left.local, probes.local[keep])
    g.remove(labels=["type-1", "type-2", "type-3"])  # dead rows outnumber live ones: the live ones in one segment
    sc = g.self_calibration
    assert len(sc["probes_pages_segments"]) == 1 and sc["probes_pages_segments"][0]["rows"] == sc["probes"]
    keep = np.isin(probes.labels, ["type-new", "type-newer"])
    assert list(g.probes().pages) == list(probes.pages[keep])

    # an older gallery: every probe's pages in one file of one column, named by probes_pages_file
    m = json.loads((g.path / "manifest.json").read_text())
    rows = g.probes().pages
    older = f"probes-{g.generation:04d}.pages.parquet"
    pq.write_table(pa.table({"png": pa.array(list(rows), pa.binary())}), g.path / "old.tmp")
    (g.path / "old.tmp").replace(g.path / older)
    m["self_calibration"].update(probes_pages_file=older, probes_pages_segments=None)
    m["checksums"].pop(older, None)
    (g.path / "manifest.json").write_text(json.dumps(m))
    g = Gallery.open(g.path, encoder=local_encoder)
    assert list(g.probes().pages) == list(rows)
    g.add([new / "type-newest" / "0.png"], label="type-newest")
    sc = g.self_calibration
    assert not sc.get("probes_pages_file") and [s["rows"] for s in sc["probes_pages_segments"]] == [sc["probes"]]
    assert list(g.probes().pages[:len(rows)]) == list(rows)

    # a segment that lost rows is named, not read as other probes' pages
    seg = sc["probes_pages_segments"][-1]
    t = pq.read_table(g.path / seg["file"])
    pq.write_table(t.slice(0, len(t) - 1), g.path / seg["file"])
    m = json.loads((g.path / "manifest.json").read_text())
    m["checksums"].pop(seg["file"], None)
    (g.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(GalleryCorruptError, match=seg["file"]):
        Gallery.open(g.path).probes()


def test_a_gallery_verifies_with_the_comparison_its_manifest_names(tmp_path, local_encoder, monkeypatch):
    """A gallery built before the comparison was recorded keeps the rule (and its weight) its thresholds were
    measured with; one that names a comparison this version does not know is refused when opened."""
    import json

    import pytest

    from encoders import pageprint
    from indexer.errors import GalleryError
    from indexer.gallery import Gallery
    from indexer.rerank import verify_top

    monkeypatch.setenv("DOCRETRIEVER_SELF_CALIBRATE", "0")
    root, captures = _sibling_register(tmp_path / "register")
    g = Gallery.build(root, tmp_path / "g", local_encoder, verify=True, force=True)
    imgs = list(captures.values())
    feats, maps = local_encoder.encode_batch(np.stack([local_encoder.preprocess(i) for i in imgs]), local=True)
    prints = [pageprint.of_image(i, keep_gray=True) for i in imgs]
    rs, ri = g.search(feats, 4, local=maps)
    learned = g.search(feats, 4, local=maps, pages=prints)
    m = json.loads((g.path / "manifest.json").read_text())
    del m["pages"]["comparison"]
    m["pages"]["weight"] = pageprint.WEIGHTS[pageprint.RULE]
    (g.path / "manifest.json").write_text(json.dumps(m))
    older = Gallery.open(g.path)
    vs, vi = older.search(feats, 4, local=maps, pages=prints)
    es, ei = verify_top(rs, ri, prints, older._s.pages.get, 5, pageprint.WEIGHTS[pageprint.RULE], pageprint.KEYPOINTS,
                        pageprint.RULE)
    assert np.array_equal(vi, ei) and np.allclose(vs, es, atol=1e-6) and not np.allclose(vs, learned[0])
    m["pages"]["comparison"] = "docretriever-verifier-99"
    (g.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(GalleryError, match="docretriever-verifier-99.*unknown"):
        Gallery.open(g.path)
