"""One answer everywhere (issue 14): `retriever classify`, `retriever run`, the Python API and the
DocClassifier call give the same label, score and decision for the same page of the same file,
over JPEG, PNG, multi-page TIFF and PDF, and read their inputs the same way."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pyarrow.parquet as pq
import pytest

from bulk_helpers import scan, write_pdf, write_tiff
from indexer_testdata import make_image

THRESHOLD = 0.5  # cosine; DocClassifier takes it on the reference scale, (cos + 1) / 2
LABELS = ("invoice", "passport", "receipt")


def _gallery(tiny, tmp_path: Path):
    """(register dir, gallery) of LABELS, one clean image each, labels from the file names."""
    from indexer.gallery import Gallery

    reg = tmp_path / "register"
    reg.mkdir()
    for lab in LABELS:
        cv2.imwrite(str(reg / f"{lab}.png"), make_image(lab))
    return reg, Gallery.build(reg, tmp_path / "gallery", tiny, label_mode="file", force=True)


@pytest.fixture()
def setup(tiny, tmp_path):
    reg, gallery = _gallery(tiny, tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    cv2.imwrite(str(docs / "a.jpg"), make_image("passport", 3))
    cv2.imwrite(str(docs / "b.png"), make_image("receipt", 4))
    write_tiff(docs / "c.tif", 2)
    write_pdf(docs / "d.pdf", 2)
    return reg, gallery, docs


def _key(path: str, page: int) -> tuple[str, int]:
    return Path(path).name, int(page)


def test_classify_run_api_and_docclassifier_agree_page_by_page(tiny, setup, tmp_path, runner):
    from retriever import DocClassifier, Retriever
    from retriever.bulk import run_bulk
    from retriever.cli import main
    from encoders.pages import iter_pages

    reg, gallery, docs = setup
    r = runner.invoke(main, ["classify", str(docs), "-g", str(gallery.path), "--threshold", str(THRESHOLD),
                             "--json", "--model", str(tiny.path)])
    assert r.exit_code == 0, r.output
    cli = {_key(o["path"], o["page"]): o for o in map(json.loads, r.stdout.splitlines())}
    assert set(cli) == {("a.jpg", 0), ("b.png", 0), ("c.tif", 0), ("c.tif", 1), ("d.pdf", 0), ("d.pdf", 1)}

    out = tmp_path / "run.parquet"
    run_bulk([str(docs)], str(gallery.path), out, encoder=tiny, threshold=THRESHOLD, progress=False)
    run = {_key(row["path"], row["page"]): row for row in pq.read_table(out).to_pylist()}
    assert set(run) == set(cli)

    files = sorted(docs.iterdir())
    api = {_key(res.source, res.page): res
           for res in Retriever(gallery, tiny, threshold=THRESHOLD).classify([str(f) for f in files])}
    assert set(api) == set(cli)

    doc = DocClassifier(str(reg), threshold=(THRESHOLD + 1) / 2, encoder=tiny)
    target = tuple(tiny.contract.input_size)
    for f in files:
        for page, img in iter_pages(str(f), target):
            k = (f.name, page)
            c, b, a = cli[k], run[k], api[k]
            assert c["label"] == b["label"] == a.label, k
            assert c["accepted"] == b["accepted"] == a.accepted, k
            assert c["score"] == pytest.approx(b["score"], abs=1e-5) and b["score"] == pytest.approx(a.score, abs=1e-5)
            label, ref_score = doc(img if page or f.suffix in (".tif", ".pdf") else str(f))
            assert label == (a.label if a.accepted else None), k
            assert 2 * ref_score - 1 == pytest.approx(a.score, abs=1e-5), k


def test_classify_reads_inputs_as_run_does(tiny, setup, tmp_path, runner):
    """Globs, @lists and table columns work for classify as for run; a folder's PDF is classified."""
    from retriever.cli import main

    _, gallery, docs = setup
    (tmp_path / "list.txt").write_text(f"{docs / 'a.jpg'}\n{docs / 'd.pdf'}\n")
    base = ["-g", str(gallery.path), "--threshold", str(THRESHOLD), "--json", "--model", str(tiny.path)]
    for spec, want in [(f"@{tmp_path / 'list.txt'}", {("a.jpg", 0), ("d.pdf", 0), ("d.pdf", 1)}),
                       (str(docs / "*.png"), {("b.png", 0)}),
                       (str(docs), {("a.jpg", 0), ("b.png", 0), ("c.tif", 0), ("c.tif", 1), ("d.pdf", 0),
                                    ("d.pdf", 1)})]:
        r = runner.invoke(main, ["classify", spec, *base])
        assert r.exit_code == 0, (spec, r.output)
        assert {_key(o["path"], o["page"]) for o in map(json.loads, r.stdout.splitlines())} == want, spec
    cv2.imwrite(str(docs / "e.png"), scan(5))
    r = runner.invoke(main, ["classify", str(docs / "nothing-*.png"), *base])
    assert r.exit_code != 0 and "nothing-" in r.output


def _register_with_pages(root: Path) -> Path:
    """A register whose types hold a 2-page TIFF, a 2-page PDF and a JPEG; a hidden folder and a
    directory link back to the root that no reader may follow."""
    (root / "forms").mkdir(parents=True)
    (root / "card").mkdir()
    write_tiff(root / "forms" / "c.tif", 2)
    write_pdf(root / "forms" / "d.pdf", 2)
    cv2.imwrite(str(root / "card" / "a.jpg"), make_image("passport", 3))
    (root / ".cache").mkdir()
    cv2.imwrite(str(root / ".cache" / "x.png"), make_image("receipt", 9))
    (root / "card" / "loop").symlink_to(root, target_is_directory=True)
    return root


def test_indexer_reads_pages_and_folders_as_run_does(tiny, tmp_path, runner):
    """`indexer build/add` walk folders and read TIFF and PDF pages as `retriever run` does: one
    exemplar per page; the same file added again (or its embedding imported) skips every page."""
    from encoders.inputs import walk_files
    from indexer.errors import LabelError
    from indexer.gallery import Gallery
    from indexer.importer import read_vectors_file
    from indexer.verify import verify
    from retriever.bulk import run_embed

    reg = _register_with_pages(tmp_path / "register")
    g = Gallery.build(reg, tmp_path / "gallery", tiny, force=True)
    rows = sorted(zip(g.items.column("source").to_pylist(), g.items.column("page").to_pylist(),
                      g.items.column("label").to_pylist()))
    walked = [p for p, _ in walk_files(str(reg))]
    assert len(walked) == 3 and not any(".cache" in p or "loop" in p for p in walked)
    assert [(Path(s).name, p, lab) for s, p, lab in rows] == [
        ("a.jpg", 0, "card"), ("c.tif", 0, "forms"), ("c.tif#page=1", 1, "forms"),
        ("d.pdf", 0, "forms"), ("d.pdf#page=1", 1, "forms")]
    again = g.add([reg])
    assert again.added == 0 and len(again.skipped) == 5  # every page, not only the first
    rep = verify(g, tiny, sample=10)
    assert rep.ok and rep.reencoded == 5, rep.problems

    # an embedding file of the same PDF and TIFF keys its pages as `indexer add` does
    emb = tmp_path / "vectors.parquet"
    run_embed([str(reg / "forms")], emb, encoder=tiny, progress=False)
    vf = read_vectors_file(emb, label_from_path="file")  # labels given below
    assert vf.pages == [0, 1, 0, 1]
    imported = g.add_vectors(vf.vectors, ["forms"] * 4, sources=vf.sources, sha256=vf.sha256, pages=vf.pages)
    assert imported.added == 0 and len(imported.skipped) == 4

    # with --label, globs and @lists are read as run reads them; without, only folders give labels
    extra = tmp_path / "extra"
    extra.mkdir()
    for i in range(3):
        cv2.imwrite(str(extra / f"n{i}.png"), make_image("new", i))
    (tmp_path / "list.txt").write_text(f"{extra / 'n2.png'}\n")
    assert g.add([str(extra / "n[01].png"), f"@{tmp_path / 'list.txt'}"], label="new", force=True).added == 3
    with pytest.raises(LabelError, match="needs --label"):
        g.add([str(extra / "*.png")])
    from indexer.cli import cli

    r = runner.invoke(cli, ["add", str(g.path), str(extra / "nothing-*.png"), "--label", "x",
                            "--model", str(tiny.path)])
    assert r.exit_code == 1 and "nothing-*.png: pattern matched no files" in r.output


def test_calibrate_reads_pages_and_folders_as_run_does(tiny, tmp_path):
    """Every page of a TIFF capture is a capture; hidden folders and directory links are skipped;
    every unreadable capture is named at once."""
    from retriever.calibrate import CalibrationError, calibrate_gallery, scan_labelled_dir

    _, gallery = _gallery(tiny, tmp_path)
    lab = tmp_path / "labelled"
    for i, t in enumerate(LABELS):
        (lab / t).mkdir(parents=True)
        cv2.imwrite(str(lab / t / "c.jpg"), make_image(t, 20 + i))
    write_tiff(lab / "invoice" / "pages.tif", 2)
    (lab / "unknown").mkdir()
    cv2.imwrite(str(lab / "unknown" / "u.png"), make_image("other", 1))
    (lab / ".trash").mkdir()
    cv2.imwrite(str(lab / ".trash" / "old.png"), make_image("receipt", 7))
    (lab / "receipt" / "loop").symlink_to(lab, target_is_directory=True)
    known, unknown = scan_labelled_dir(lab)
    assert len(known) == 4 and len(unknown) == 1
    rec = calibrate_gallery(str(gallery.path), str(lab), tiny)
    assert rec["n_known_queries"] == 5 and rec["n_pos"] == 5  # 3 JPEGs + 2 TIFF pages
    (lab / "passport" / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (lab / "unknown" / "empty.png").write_bytes(b"")
    with pytest.raises(CalibrationError) as exc:
        calibrate_gallery(str(gallery.path), str(lab), tiny)
    assert "bad.jpg" in str(exc.value) and "empty.png" in str(exc.value) and "2 capture" in str(exc.value)
