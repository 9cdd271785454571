"""Bulk classification (`retriever run`): inputs, pages, error rows, output file, resume, CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import encoders
from bulk_helpers import bulk, interrupted_run, LABELS, THRESHOLD, build_gallery, scan, write_pdf, write_scans, write_tiff
from retriever import bulk_batch
from retriever.bulk_cli import run as run_cmd
from retriever.bulk_meta import META_KEY, read_result_metadata
from retriever.bulk_store import BulkError, ResumeRefusedError
from encoders.inputs import InputError, expand_inputs

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["path", "page", "label", "score", "accepted", "threshold", "top_k_labels", "top_k_scores", "top_k_ids", "margin",
           "decision_score", "rule", "operating_point", "error"]



@pytest.fixture
def gallery(tiny, tmp_path):
    return build_gallery(tiny, tmp_path)



def paths_of(item_iter):
    return [(it.path, it.problem) for it in item_iter]


# ---------------------------------------------------------------------------------- inputs
def test_directories_are_walked_recursively_sorted_and_filtered(tmp_path):
    d = tmp_path / "scans"
    for rel in ["b/2.jpg", "b/1.PNG", "a.tif", "c/d/e.pdf", "notes.txt", ".hidden/x.jpg", ".y.jpg", "z.webp"]:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")
    got = [p for p, _ in paths_of(expand_inputs([d]))]
    assert got == [str(d / r) for r in ["a.tif", "b/1.PNG", "b/2.jpg", "c/d/e.pdf", "z.webp"]]
    empty = tmp_path / "empty"
    empty.mkdir()
    (problem,) = list(expand_inputs([empty]))
    assert problem.path == str(empty) and "no supported files" in problem.problem


def test_globs_list_files_and_missing_files(tmp_path):
    for name in ["b.jpg", "a.jpg", "c.png"]:
        (tmp_path / name).write_bytes(b"x")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# scans\n{tmp_path / 'c.png'}\n\n{tmp_path / 'a.jpg'}\n")
    got = paths_of(expand_inputs([str(tmp_path / "*.jpg"), f"@{lst}", str(lst), str(tmp_path / "gone.jpg"),
                                  str(tmp_path / "*.bmp")]))
    a, b, c = (str(tmp_path / n) for n in ["a.jpg", "b.jpg", "c.png"])
    assert got[:6] == [(a, None), (b, None), (c, None), (a, None), (c, None), (a, None)]
    assert got[6] == (str(tmp_path / "gone.jpg"), None)  # reported as a row by the reader
    assert got[7][0] == str(tmp_path / "*.bmp") and "matched no files" in got[7][1]
    with pytest.raises(InputError, match="list file not found"):
        list(expand_inputs(["@" + str(tmp_path / "nope.txt")]))


def test_parquet_and_csv_columns(tmp_path):
    pq.write_table(pa.table({"path": ["p1.jpg", "p2.jpg"], "file": ["f1.jpg", None]}), tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_text("id,scan\n1,c1.jpg\n2,c2.jpg\n")
    got = paths_of(expand_inputs([tmp_path / "t.parquet", f"{tmp_path / 't.parquet'}:file",
                                  f"{tmp_path / 't.csv'}:scan"]))
    assert [p for p, _ in got] == ["p1.jpg", "p2.jpg", "f1.jpg", f"{tmp_path / 't.parquet'}:file", "c1.jpg", "c2.jpg"]
    assert got[3][1] == "empty path value in the table"
    with pytest.raises(InputError, match="no column 'path'.*columns: id, scan"):
        list(expand_inputs([tmp_path / "t.csv"]))
    with pytest.raises(InputError, match="no column 'nope'"):
        list(expand_inputs([f"{tmp_path / 't.parquet'}:nope"]))


# ---------------------------------------------------------------------------------- output
def test_output_schema_metadata_and_results_match_retriever(tiny, gallery, tmp_path):
    files = write_scans(tmp_path / "in", 9)
    out = tmp_path / "res.parquet"
    s = bulk([tmp_path / "in"], gallery, out, tiny, top_k=2)
    t = pq.read_table(out)
    assert t.column_names == COLUMNS
    assert t.schema.field("page").type == pa.int32()
    assert t.schema.field("top_k_labels").type == pa.list_(pa.string())
    assert t.schema.field("top_k_scores").type == pa.list_(pa.float32())
    assert t.column("path").to_pylist() == [str(f) for f in files]
    assert t.column("error").null_count == t.num_rows
    from retriever import Retriever

    ref = Retriever(gallery, encoder=tiny, threshold=THRESHOLD, top_k=2).classify(files)
    assert t.column("label").to_pylist() == [r.label for r in ref]
    np.testing.assert_allclose(t.column("score").to_numpy(), [r.score for r in ref], atol=1e-6)
    assert t.column("top_k_labels").to_pylist() == [[lab for lab, _ in r.top_k] for r in ref]
    # the exemplar behind each top-k label, by id: the same ids the Python API gives, and they are
    # gallery items of that label
    ids = t.column("top_k_ids").to_pylist()
    assert ids == [r.top_k_ids for r in ref]
    assert all(list(gallery.labels_of(row)) == labs for row, labs in zip(ids, t.column("top_k_labels").to_pylist()))
    assert all(len(x) == 2 for x in t.column("top_k_scores").to_pylist())
    assert set(t.column("label").to_pylist()) <= set(LABELS)
    md = t.schema.metadata
    assert md[b"docretriever.model_fingerprint"].decode() == tiny.fingerprint
    assert md[b"docretriever.gallery_generation"].decode() == str(gallery.generation)
    assert md[b"docretriever.schema_version"] == b"3"
    assert md[b"docretriever.encoder.fingerprint"].decode() == tiny.fingerprint  # what `indexer import` reads
    meta = json.loads(md[META_KEY.encode()])
    assert meta["complete"] and meta["files"] == 9 and meta["rows"] == 9 and meta["threshold"] == THRESHOLD
    assert meta["model"]["name"] == tiny.name and meta["gallery"]["path"] == str(gallery.path.resolve())
    assert read_result_metadata(out)["docretriever_version"]
    assert s["rows"] == 9 and s["errors"] == 0 and s["accepted"] + s["rejected"] == 9
    assert sum(s["labels"].values()) == s["accepted"] and s["scans_per_s"] > 0
    assert not Path(str(out) + ".parts").exists()


def test_features_column(tiny, gallery, tmp_path):
    files = write_scans(tmp_path / "in", 3)
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "res.parquet"
    bulk([tmp_path / "in"], gallery, out, tiny, with_features=True)
    t = pq.read_table(out)
    assert t.schema.field("vector").type == pa.list_(pa.float32(), tiny.dim)
    feats = t.column("vector").to_pylist()
    assert feats[0] is None and t.column("error")[0].as_py()  # bad.png sorts first
    np.testing.assert_allclose(np.array(feats[1:], dtype=np.float32), tiny.encode(files), atol=1e-5)


def test_bad_inputs_become_error_rows_and_the_job_goes_on(tiny, gallery, tmp_path):
    d = tmp_path / "in"
    good = write_scans(d, 5)
    (d / "empty.jpg").write_bytes(b"")
    (d / "truncated.jpg").write_bytes(good[0].read_bytes()[:200])
    (d / "text.png").write_text("hello, not an image")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + bytes(500) + b"\xff\xd9")
    (d / "broken.pdf").write_bytes(b"%PDF-1.4\ngarbage")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "res.parquet"
    s = bulk([d, missing], gallery, out, tiny)
    t = pq.read_table(out)
    errors = {Path(p).name: e for p, e in zip(t.column("path").to_pylist(), t.column("error").to_pylist()) if e}
    assert errors["empty.jpg"] == "empty file (0 bytes)"
    assert "truncated" in errors["truncated.jpg"]
    assert "text" in errors["text.png"]
    assert "corrupt" in errors["corrupt.jpg"]
    assert "cannot open PDF" in errors["broken.pdf"]
    assert errors["missing.jpg"] == "file not found"
    assert len(errors) == 6 and s["errors"] == 6 and s["rows"] == 11
    ok = t.filter(pa.compute.is_null(t.column("error")))
    assert sorted(ok.column("path").to_pylist()) == sorted(str(p) for p in good)
    bad = t.filter(pa.compute.is_valid(t.column("error")))
    assert bad.column("label").null_count == bad.num_rows and bad.column("accepted").null_count == bad.num_rows


def test_multipage_tiff_and_pdf_give_one_row_per_page(tiny, gallery, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_tiff(d / "a.tif", 3)
    write_pdf(d / "b.pdf", 2)
    write_scans(d, 1)
    out = tmp_path / "res.parquet"
    bulk([d], gallery, out, tiny, batch_size=2)
    t = pq.read_table(out)
    rows = list(zip([Path(p).name for p in t.column("path").to_pylist()], t.column("page").to_pylist()))
    assert rows == [("a.tif", 0), ("a.tif", 1), ("a.tif", 2), ("b.pdf", 0), ("b.pdf", 1), ("scan-00000.jpg", 0)]
    assert t.column("error").null_count == t.num_rows
    # each TIFF page is read as that page (not page 0 three times)
    from encoders.pages import iter_pages

    pages = list(iter_pages(str(d / "a.tif")))
    assert [i for i, _ in pages] == [0, 1, 2]
    np.testing.assert_allclose(tiny.encode([img for _, img in pages]),
                               tiny.encode([scan(500 + i) for i in range(3)]), atol=1e-5)
    pdf_pages = list(iter_pages(str(d / "b.pdf"), (32, 32)))
    assert [i for i, _ in pdf_pages] == [0, 1]
    assert not np.array_equal(pdf_pages[0][1], pdf_pages[1][1])
    assert min(pdf_pages[0][1].shape[:2]) >= 64  # rendered at >= 2x the model input


def test_pdf_without_pypdfium2_is_one_error_row_with_install_hint(tiny, gallery, tmp_path, monkeypatch):
    write_pdf(tmp_path / "doc.pdf", 3)
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # import fails
    out = tmp_path / "res.parquet"
    s = bulk([tmp_path / "doc.pdf"], gallery, out, tiny)
    t = pq.read_table(out)
    assert t.num_rows == 1 and "docretriever[pdf]" in t.column("error")[0].as_py()
    assert s["errors"] == 1


def test_pdf_pages_render_near_twice_the_model_input(tiny):
    from encoders.pages import _pdf_scale

    s = _pdf_scale(595.0, 842.0, (128, 128))  # A4 in points
    assert 2 * 128 <= 595 * s < 3 * 128 and 842 * s >= 2 * 128


# ---------------------------------------------------------------------------------- pipeline
def test_inputs_are_consumed_lazily(tiny, gallery, tmp_path, monkeypatch):
    """Memory stays bounded: the input stream is read only a few batches ahead of the work."""
    from retriever import bulk_store as store_mod

    write_scans(tmp_path / "in", 60)
    pulled = [0]
    real_expand = store_mod.expand_inputs

    def counting(specs):
        for item in real_expand(specs):
            pulled[0] += 1
            yield item

    seen: list[tuple[int, int]] = []
    real_process = bulk_batch.BatchProcessor.process

    def process(self, seqs, paths, problems=None):
        seen.append((seqs[0], pulled[0]))
        return real_process(self, seqs, paths, problems)

    monkeypatch.setattr(store_mod, "expand_inputs", counting)  # PartStore.remaining reads the inputs
    monkeypatch.setattr(bulk_batch.BatchProcessor, "process", process)
    bulk([tmp_path / "in"], gallery, tmp_path / "res.parquet", tiny, batch_size=4, workers=2)
    max_inflight = 4  # 2 * workers batches
    assert len(seen) == 15
    assert all(pulled_then <= first_seq + (max_inflight + 1) * 4 for first_seq, pulled_then in seen)
    assert seen[0][1] < 60


def test_interrupted_run_keeps_complete_parts_and_resumes(tiny, gallery, tmp_path, monkeypatch):
    files = write_scans(tmp_path / "in", 40)
    out = tmp_path / "res.parquet"
    interrupted_run(monkeypatch, 6, [tmp_path / "in"], gallery, out, tiny, batch_size=4, workers=1, part_rows=4)
    progress = json.loads((tmp_path / "res.parquet.parts" / "progress.json").read_text())
    assert progress["files_done"] == 20 and not out.exists()
    s = bulk([tmp_path / "in"], gallery, out, tiny, batch_size=4)
    assert s["resumed_files"] == 20 and s["new_rows"] == 20
    t = pq.read_table(out)
    assert t.column("path").to_pylist() == [str(f) for f in files]


def test_resume_is_refused_when_model_gallery_or_inputs_differ(tiny, gallery, tmp_path, monkeypatch,
                                                               other_tiny_model_path):
    write_scans(tmp_path / "in", 12)
    out = tmp_path / "res.parquet"
    interrupted_run(monkeypatch, 3, [tmp_path / "in"], gallery, out, tiny, workers=1, part_rows=1)

    other = encoders.load(other_tiny_model_path)
    other_gallery = build_gallery(other, tmp_path, "other-gallery")
    with pytest.raises(ResumeRefusedError, match="the model differs.*--overwrite"):
        bulk([tmp_path / "in"], other_gallery, out, other)
    with pytest.raises(ResumeRefusedError, match="the threshold differs"):
        bulk([tmp_path / "in"], gallery, out, tiny, threshold=0.6)
    with pytest.raises(ResumeRefusedError, match="the inputs differ"):
        bulk([tmp_path / "in", tmp_path / "more"], gallery, out, tiny)
    # a file inserted among the done ones changes the done prefix
    (tmp_path / "in" / "scan-00000a.jpg").write_bytes((tmp_path / "in" / "scan-00001.jpg").read_bytes())
    with pytest.raises(ResumeRefusedError, match="first 8 inputs are not the paths"):
        bulk([tmp_path / "in"], gallery, out, tiny)
    (tmp_path / "in" / "scan-00000a.jpg").unlink()
    gallery.add([tmp_path / "in" / "scan-00003.jpg"], label="letter", force=True)  # new generation
    with pytest.raises(ResumeRefusedError, match="gallery generation differs"):
        bulk([tmp_path / "in"], gallery, out, tiny)
    s = bulk([tmp_path / "in"], gallery, out, tiny, overwrite=True)
    assert s["resumed_files"] == 0 and s["rows"] == 12


def test_finished_output_is_not_redone_nor_mixed(tiny, gallery, tmp_path):
    write_scans(tmp_path / "in", 5)
    out = tmp_path / "res.parquet"
    bulk([tmp_path / "in"], gallery, out, tiny)
    before = out.stat().st_mtime_ns
    s = bulk([tmp_path / "in"], gallery, out, tiny)
    assert s["status"] == "already complete" and s["rows"] == 5 and out.stat().st_mtime_ns == before
    write_scans(tmp_path / "in", 1, start=99)
    with pytest.raises(ResumeRefusedError, match="inputs changed"):
        bulk([tmp_path / "in"], gallery, out, tiny)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)
    with pytest.raises(BulkError, match="not a docretriever bulk result"):
        bulk([tmp_path / "in"], gallery, foreign, tiny)
    assert bulk([tmp_path / "in"], gallery, out, tiny, overwrite=True)["rows"] == 6


CHILD = textwrap.dedent("""
    import sys, time
    from retriever import bulk_batch
    real = bulk_batch.BatchProcessor.process
    def slow(self, *a, **k):
        time.sleep(0.15)
        return real(self, *a, **k)
    bulk_batch.BatchProcessor.process = slow
    import encoders
    from retriever.bulk import run_bulk
    model, gallery, inputs, out = sys.argv[1:5]
    run_bulk([inputs], gallery, out, encoder=encoders.load(model), threshold=0.5, batch_size=4, workers=2,
             part_rows=4, progress=False)
""")


def test_resume_after_sigkill_gives_every_input_exactly_once(tiny, gallery, tmp_path, tiny_model_path):
    files = write_scans(tmp_path / "in", 80)
    write_tiff(tmp_path / "in" / "zz-multi.tif", 3)
    (tmp_path / "in" / "scan-00010.jpg").write_bytes(b"")  # an error row survives resume too
    out = tmp_path / "res.parquet"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_model_path), str(gallery.path),
                             str(tmp_path / "in"), str(out)], env=env, cwd=str(ROOT))
    progress_file = tmp_path / "res.parquet.parts" / "progress.json"
    deadline = time.monotonic() + 60
    parts = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            parts = len(json.loads(progress_file.read_text())["parts"])
        except (OSError, ValueError):
            parts = 0
        if parts >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the child finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    done = json.loads(progress_file.read_text())
    assert 0 < done["files_done"] < 81
    s = bulk([tmp_path / "in"], gallery, out, tiny)
    assert s["resumed_files"] == done["files_done"] and s["resumed_rows"] == done["rows_done"]
    t = pq.read_table(out)
    keys = list(zip(t.column("path").to_pylist(), t.column("page").to_pylist()))
    expected = [(str(f), 0) for f in files] + [(str(tmp_path / "in" / "zz-multi.tif"), i) for i in range(3)]
    assert keys == expected  # every page exactly once, in input order
    assert Counter(t.column("error").to_pylist())["empty file (0 bytes)"] == 1
    fresh = tmp_path / "fresh.parquet"
    bulk([tmp_path / "in"], gallery, fresh, tiny)
    assert pq.read_table(fresh).select(COLUMNS).equals(t.select(COLUMNS))


# ---------------------------------------------------------------------------------- CLI
def test_cli_exit_codes_and_summary(tiny_model_path, gallery, tmp_path):
    write_scans(tmp_path / "in", 4)
    out = tmp_path / "res.parquet"
    args = [str(tmp_path / "in"), "-g", str(gallery.path), "-o", str(out), "--model", str(tiny_model_path),
            "--threshold", str(THRESHOLD), "--top-k", "2", "--batch-size", "3", "--features", "-q"]
    r = CliRunner().invoke(run_cmd, args)
    assert r.exit_code == 0, r.output
    assert "rows 4" in r.output and "accepted" in r.output
    assert pq.read_table(out).num_rows == 4 and "vector" in pq.read_schema(out).names
    (tmp_path / "in" / "zzz.jpg").write_bytes(b"junk")
    r = CliRunner().invoke(run_cmd, args + ["--overwrite"])
    assert r.exit_code == 3, r.output
    assert "1 of 5 rows are errors" in r.output
    r = CliRunner().invoke(run_cmd, args[:-1] + ["--fpr", "0.01"])
    assert r.exit_code == 2 and "--fpir, --fpr or --threshold, not both" in r.output
    r = CliRunner().invoke(run_cmd, [str(tmp_path / "in"), "-g", str(gallery.path), "-o", str(out), "--model",
                                     str(tiny_model_path), "--threshold", "0.7", "-q"])
    assert r.exit_code == 1 and "the threshold differs" in r.output
    r = CliRunner().invoke(run_cmd, ["@" + str(tmp_path / "nope.txt"), "-g", str(gallery.path), "-o",
                                     str(tmp_path / "x.parquet"), "--model", str(tiny_model_path),
                                     "--threshold", "0.5", "-q"])
    assert r.exit_code == 1 and "list file not found" in r.output


def test_part_store_commits_only_whole_input_files_when_batches_split_them(tmp_path):
    """Ray output batches may end inside a multi-page file: its rows wait for the next batch."""
    from retriever.bulk_batch import output_schema
    from retriever.bulk_store import PartStore

    schema = output_schema()
    store = PartStore.open(tmp_path / "o.parquet", {"inputs": ["x"]}, schema, part_rows=1)

    def rows(seqs, pages):
        n = len(seqs)
        cols = {f.name: pa.nulls(n, f.type) for f in schema}
        cols.update(path=pa.array([f"f{s}" for s in seqs]), page=pa.array(pages, pa.int32()),
                    error=pa.array(["e"] * n), _seq=pa.array(seqs, pa.int64()))
        return pa.table(cols)

    store.append(rows([0, 1, 1], [0, 0, 1]), complete=False)
    assert store.files_done == 1 and store.rows_done == 1
    store.append(rows([1, 2], [2, 0]), complete=False)
    assert store.files_done == 2 and store.rows_done == 4
    store.finish()
    assert store.files_done == 3 and store.tally.errors == 5
    with pytest.raises(BulkError, match="out of order"):
        store.append(rows([5], [0]))


def test_progress_lines_when_not_a_terminal(monkeypatch):
    import io

    from indexer import cli_shared
    from retriever import bulk_progress

    monkeypatch.setattr(cli_shared, "LOG_EVERY_S", 0.0)
    monkeypatch.setattr(bulk_progress, "count_inputs", lambda specs: 100)  # counted in a background thread
    stream = io.StringIO()
    prog = bulk_progress.Progress(["scans/"], stream=stream)
    prog.start(10)
    deadline = time.monotonic() + 10
    while prog.total is None and time.monotonic() < deadline:
        time.sleep(0.01)
    prog.update(5, 6, 1)
    prog.close()
    line = stream.getvalue().strip().splitlines()[-1]
    assert line.startswith("retriever run: 15/100 inputs, 6 rows this run, 1 errors") and "ETA" in line


def test_the_library_draws_no_progress_unless_given_a_sink(tiny, gallery, tmp_path, capfd):
    """run_bulk from Python prints nothing; a caller's sink hears every committed batch."""
    scans = write_scans(tmp_path / "scans", 5)
    bulk([tmp_path / "scans"], gallery, tmp_path / "quiet.parquet", tiny, progress=None)
    assert capfd.readouterr().err == ""

    class Sink:
        def __init__(self):
            self.calls = []

        def start(self, initial):
            self.calls.append(("start", initial))

        def update(self, files, rows, errors):
            self.calls.append(("update", files, rows, errors))

        def close(self):
            self.calls.append(("close",))

    sink = Sink()
    bulk([tmp_path / "scans"], gallery, tmp_path / "told.parquet", tiny, progress=sink)
    assert sink.calls[0] == ("start", 0) and sink.calls[-1] == ("close",)
    updates = [c for c in sink.calls if c[0] == "update"]
    assert sum(c[1] for c in updates) == len(scans) and sum(c[2] for c in updates) == len(scans)


CLI_CHILD = textwrap.dedent("""
    import sys, time
    from retriever import bulk_batch
    real = bulk_batch.BatchProcessor.process
    def slow(self, *a, **k):
        time.sleep(0.15)
        return real(self, *a, **k)
    bulk_batch.BatchProcessor.process = slow
    from retriever import bulk_store
    bulk_store.PART_ROWS = 4
    from retriever.bulk_cli import run
    run.main(sys.argv[1:], prog_name="retriever run")
""")


def test_cli_sigterm_keeps_complete_rows_and_the_same_command_resumes(tiny_model_path, gallery, tmp_path):
    files = write_scans(tmp_path / "in", 60)
    out = tmp_path / "res.parquet"
    args = [str(tmp_path / "in"), "-g", str(gallery.path), "-o", str(out), "--model", str(tiny_model_path),
            "--threshold", str(THRESHOLD), "--batch-size", "4", "-q"]
    script = tmp_path / "cli_child.py"
    script.write_text(CLI_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=str(ROOT), stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)))
    progress_file = tmp_path / "res.parquet.parts" / "progress.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(progress_file.read_text())["files_done"] >= 8:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    done = json.loads(progress_file.read_text())["files_done"]
    assert 8 <= done < 60 and not out.exists()
    r = CliRunner().invoke(run_cmd, args)
    assert r.exit_code == 0, r.output
    assert f"resumed after {done} inputs" in r.output
    assert pq.read_table(out).column("path").to_pylist() == [str(f) for f in files]


def test_png_bmp_webp_and_grayscale_scans_are_classified(tiny, gallery, tmp_path):
    import cv2

    d = tmp_path / "in"
    write_scans(d, 1, ext=".png")
    write_scans(d, 1, start=1, ext=".bmp")
    write_scans(d, 1, start=2, ext=".webp")
    cv2.imwrite(str(d / "gray.jpg"), cv2.cvtColor(scan(3), cv2.COLOR_BGR2GRAY))
    out = tmp_path / "res.parquet"
    s = bulk([d], gallery, out, tiny)
    t = pq.read_table(out)
    assert sorted(Path(p).suffix for p in t.column("path").to_pylist()) == [".bmp", ".jpg", ".png", ".webp"]
    assert s["errors"] == 0 and t.column("label").null_count == 0
