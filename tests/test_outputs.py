"""`retriever run -o`: the output's name picks its format (.parquet, .jsonl, .csv, - for stdout)."""
from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest

from bulk_helpers import THRESHOLD, build_gallery, write_scans


@pytest.fixture()
def job(tiny, tmp_path):
    gallery = build_gallery(tiny, tmp_path)
    write_scans(tmp_path / "in", 5)
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    return gallery, tmp_path / "in"


def _args(gallery, inp, out, tiny):
    return ["run", str(inp), "-g", str(gallery.path), "-o", str(out), "--threshold", str(THRESHOLD), "--model",
            str(tiny.path), "-q", "--top-k", "2"]


def test_jsonl_csv_and_stdout_hold_the_same_rows_as_parquet(job, tiny, tmp_path, runner):
    from retriever.cli import main

    gallery, inp = job
    r = runner.invoke(main, _args(gallery, inp, tmp_path / "r.parquet", tiny))
    assert r.exit_code == 3, r.output  # bad.png: one error row
    ref = pq.read_table(tmp_path / "r.parquet").to_pylist()

    r = runner.invoke(main, _args(gallery, inp, tmp_path / "r.jsonl", tiny))
    assert r.exit_code == 3, r.output
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(x["path"], x["page"]) for x in rows] == [(x["path"], x["page"]) for x in ref]
    for got, want in zip(rows, ref):
        if want["error"] is not None:
            assert got == {"path": want["path"], "page": 0, "error": want["error"]}
            continue
        assert got["label"] == want["label"] and got["accepted"] == want["accepted"] and got["error"] is None
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert [t["label"] for t in got["top_k"]] == want["top_k_labels"]
        assert [t["id"] for t in got["top_k"]] == want["top_k_ids"]
    assert not list(tmp_path.glob(".r.jsonl*")), "the hidden Parquet is gone once converted"
    # a finished text output is not silently redone or replaced
    r = runner.invoke(main, _args(gallery, inp, tmp_path / "r.jsonl", tiny))
    assert r.exit_code == 1 and "--overwrite" in r.output

    r = runner.invoke(main, _args(gallery, inp, tmp_path / "r.csv", tiny))
    assert r.exit_code == 3, r.output
    with open(tmp_path / "r.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [x["label"] for x in table] == [x["label"] or "" for x in ref]
    good = next(x for x in table if not x["error"])
    assert [t["label"] for t in json.loads(good["top_k"])] and good["accepted"] in ("True", "False")

    r = runner.invoke(main, _args(gallery, inp, "-", tiny))
    assert r.exit_code == 3, r.output
    streamed = [json.loads(line) for line in r.stdout.splitlines()]
    assert streamed == rows
    assert not (tmp_path / "-").exists()


def test_unknown_output_names_are_refused_before_work(job, tiny, tmp_path, runner):
    from retriever.cli import main

    gallery, inp = job
    for name in ("r.txt", "results"):
        r = runner.invoke(main, _args(gallery, inp, tmp_path / name, tiny))
        assert r.exit_code == 2 and ".parquet, .jsonl, .csv, -" in r.output
        assert not (tmp_path / name).exists() and not list(tmp_path.glob(f"{name}*.parts"))
    r = runner.invoke(main, ["embed", str(inp), "-o", str(tmp_path / "v.csv"), "--model", str(tiny.path)])
    assert r.exit_code == 2 and "indexer import" in r.output
