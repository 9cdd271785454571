"""`indexer` command line: round trips, error messages and exit codes, help text."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from indexer import Gallery
from indexer.cli import cli
from indexer_testdata import bad_files, make_register, near_copy, write_image

REPO = Path(__file__).resolve().parents[1]


def run(*args: str | Path, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1, result.output
    return result


@pytest.fixture()
def gal(tmp_path, tiny_model_path) -> Path:
    reg = make_register(tmp_path / "reg", {"invoice": 2, "passport": 1})
    out = tmp_path / "gal"
    r = run("build", reg, "-o", out, "--model", tiny_model_path)
    assert "built gallery with 3 image(s) under 2 label(s)" in r.stdout
    return out


def test_build_list_stats_export_round_trip(gal, tiny_model_path, tmp_path):
    r = run("list", gal)
    assert "invoice   2\npassport  1\n" in r.stdout and "2 label(s), 3 image(s)" in r.stdout
    listed = json.loads(run("list", gal, "--json").stdout)
    assert listed == [{"label": "invoice", "count": 2}, {"label": "passport", "count": 1}]
    s = json.loads(run("stats", gal, "--json").stdout)
    assert (s["vectors"], s["labels"], s["dim"], s["index_spec"], s["generation"]) == (3, 2, 16, "flat", 1)
    assert s["bytes_per_vector"] == 16 * 4 + 8 and s["encoder"]["name"] == "tiny-test-model"
    assert s["sizes"]["index_file"] > 0 and s["sizes"]["items_file"] > 0
    text = run("stats", gal, "--model", tiny_model_path).stdout
    assert "bytes per vector:" in text and "tiny-test-model (fingerprint " in text and "generation:" in text
    out = tmp_path / "g.parquet"
    assert "exported 3 vector(s)" in run("export", gal, "-o", out).stdout
    t = pq.read_table(out)
    assert t.num_rows == 3 and t.schema.metadata[b"docretriever.encoder.dim"] == b"16"


def test_add_remove_verify_round_trip(gal, tiny_model_path, tmp_path):
    new = make_register(tmp_path / "new", {"visa": 2})
    r = run("add", gal, new, "--model", tiny_model_path)
    assert "added 2 image(s) under 1 label(s)" in r.stdout and "5 vector(s), 3 label(s)" in r.stdout
    f = write_image(tmp_path / "one.png", "permit")
    assert "added 1 image(s)" in run("add", gal, f, "--label", "permit", "--model", tiny_model_path).stdout
    r = run("add", gal, f, "--label", "permit", "--model", tiny_model_path)
    assert "added 0 image(s)" in r.stdout and "already registered" in r.stderr
    r = run("remove", gal, "--label", "visa", "--id", "0")
    assert "removed 3 item(s) (ids 0, 3, 4)" in r.stdout
    r = run("verify", gal, "--model", tiny_model_path)
    assert r.stdout.startswith("OK:") and "3 re-encoded" in r.stdout
    assert json.loads(run("list", gal, "--json").stdout) == [
        {"label": "invoice", "count": 1}, {"label": "passport", "count": 1}, {"label": "permit", "count": 1}]
    assert "generation 5 restores" in run("rollback", gal).stdout
    assert Gallery.open(gal).count == 6


def test_file_label_mode_and_collision_message(tmp_path, tiny_model_path):
    reg = tmp_path / "reg"
    a = write_image(reg / "x_y.png", "a")
    b = write_image(reg / "x" / "y.png", "b")
    r = run("build", reg, "-o", tmp_path / "gal", "--label-mode", "file", "--model", tiny_model_path, ok=False)
    assert "label 'x_y' from several files" in r.output and str(a) in r.output and str(b) in r.output
    b.unlink()
    run("build", reg, "-o", tmp_path / "gal", "--label-mode", "file", "--model", tiny_model_path)
    assert json.loads(run("list", tmp_path / "gal", "--json").stdout) == [{"label": "x_y", "count": 1}]


def test_errors_are_clear_and_exit_1(gal, tiny_model_path, other_tiny_model_path, tmp_path):
    f = write_image(tmp_path / "one.png", "permit")
    assert "needs --label" in run("add", gal, f, "--model", tiny_model_path, ok=False).output
    r = run("add", gal, f, "--label", "p", "--model", other_tiny_model_path, ok=False)
    fp = json.loads((gal / "manifest.json").read_text())["encoder"]["fingerprint"]
    assert fp in r.output and "rebuild" in r.output and "Traceback" not in r.output
    assert "--model" in run("list", gal, "--model", other_tiny_model_path, ok=False).output
    assert "not a gallery" in run("list", tmp_path, ok=False).output
    assert "not in gallery" in run("remove", gal, "--label", "nope", ok=False).output
    assert "already a gallery" in run("build", tmp_path / "reg", "-o", gal, "--model", tiny_model_path,
                                      ok=False).output
    usage = CliRunner().invoke(cli, ["remove", str(gal)])
    assert usage.exit_code == 2 and "--label or --id" in usage.output


def test_bad_batch_lists_every_file(gal, tiny_model_path, tmp_path):
    bad = bad_files(tmp_path / "batch")
    r = run("add", gal, tmp_path / "batch", "--label", "x", "--model", tiny_model_path, ok=False)
    assert "nothing was added" in r.output and all(str(p) in r.output for p in bad)
    assert Gallery.open(gal).count == 3


def test_near_duplicate_needs_force(gal, tiny_model_path, tmp_path):
    src = Path(Gallery.open(gal).items.column("source").to_pylist()[0])
    nd = near_copy(src, tmp_path / "nd.png")
    r = run("add", gal, nd, "--label", "passport", "--model", tiny_model_path, ok=False)
    assert "near-identical" in r.output and str(nd) in r.output and "--force" in r.output
    r = run("add", gal, nd, "--label", "passport", "--force", "--model", tiny_model_path)
    assert "added 1 image(s)" in r.stdout and "near-duplicate accepted" in r.stderr


def test_lock_contention_names_the_lock_file(gal, tiny_model_path, tmp_path):
    import filelock

    f = write_image(tmp_path / "one.png", "permit")
    with filelock.FileLock(str(gal / ".lock")):
        r = run("add", gal, f, "--label", "p", "--model", tiny_model_path, "--lock-timeout", "0.2", ok=False)
    assert str(gal / ".lock") in r.output and "locked by another writer" in r.output
    assert Gallery.open(gal).count == 3


def test_verify_failure_lists_problems(gal, tiny_model_path):
    import faiss

    m = json.loads((gal / "manifest.json").read_text())
    index = faiss.read_index(str(gal / m["index_file"]))
    index.remove_ids(faiss.IDSelectorRange(0, 1))  # index loses id 0, items keep it
    faiss.write_index(index, str(gal / m["index_file"]))
    r = run("verify", gal, "--model", tiny_model_path, ok=False)
    assert "4 problem(s)" in r.output and "items-0001.parquet has 3 rows but index-0001.faiss 2 vectors" in r.output
    assert "index-0001.faiss: checksum mismatch" in r.output
    assert "count 3, index holds 2" in r.output and "but not in index-0001.faiss: [0]" in r.output
    assert "Error: " in run("list", gal, ok=False).output  # normal open refuses the inconsistent gallery


def test_rollback_recovers_a_gallery_whose_current_files_are_broken(gal, tiny_model_path, tmp_path):
    run("add", gal, write_image(tmp_path / "one.png", "permit"), "--label", "permit", "--model", tiny_model_path)
    m = json.loads((gal / "manifest.json").read_text())
    (gal / m["index_file"]).write_bytes(b"garbage")
    r = run("list", gal, ok=False)
    assert m["index_file"] in r.output or "cannot read generation 2" in r.output
    assert "indexer rollback" in r.output
    assert "restores the content before generation 2" in run("rollback", gal).stdout
    assert json.loads(run("list", gal, "--json").stdout) == [{"label": "invoice", "count": 2},
                                                            {"label": "passport", "count": 1}]
    assert run("verify", gal, "--model", tiny_model_path).stdout.startswith("OK:")


def test_help_texts_have_examples():
    top = run("--help").stdout
    for cmd in ("build", "add", "remove", "list", "stats", "verify", "export", "rollback"):
        assert cmd in top
        assert "indexer " + cmd in run(cmd, "--help").stdout.replace("\n", " ")


def test_python_dash_m_indexer_builds_a_gallery(tmp_path, tiny_model_path):
    reg = make_register(tmp_path / "reg", {"a": 1, "b": 1})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "indexer", "build", str(reg), "-o", str(tmp_path / "gal"),
                           "--model", str(tiny_model_path)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "built gallery with 2 image(s)" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "indexer", "list", str(tmp_path / "nowhere")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Error:" in proc.stderr and "Traceback" not in proc.stderr


def test_list_items_shows_ids_and_version_is_printed(gal):
    r = run("list", gal, "--items")
    lines = r.output.strip().splitlines()
    assert lines[0].split()[:3] == ["id", "label", "added"] and lines[-1].startswith("3 exemplar(s)")
    ids = [int(ln.split()[0]) for ln in lines[1:-1]]
    assert ids == sorted(ids) and len(ids) == 3
    recs = [json.loads(x) for x in run("list", gal, "--items", "--json").output.strip().splitlines()]
    assert [r["id"] for r in recs] == ids and all(r["added_at"].endswith("Z") and r["source"] for r in recs)
    assert "indexer, version " in run("--version").output
