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


@pytest.fixture()
def setup(tiny, tmp_path):
    from indexer.gallery import Gallery

    reg = tmp_path / "register"
    reg.mkdir()
    for lab in LABELS:
        cv2.imwrite(str(reg / f"{lab}.png"), make_image(lab))
    gallery = Gallery.build(reg, tmp_path / "gallery", tiny, label_mode="file", force=True)
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
    from retriever.pages import iter_pages

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
