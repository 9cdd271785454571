"""scripts/evaluate.py on a tiny synthetic benchmark with the tiny model."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import encoders
from synth_docs import make_benchmark

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "evaluate.py"


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return make_benchmark(tmp_path_factory.mktemp("bench"), n_types=8, n_queries=3, n_unknown_types=2)


@pytest.fixture()
def model_copy(tmp_path, tiny_model_path) -> Path:
    """A private copy: --write-thresholds rewrites the file (the session fixture must stay intact)."""
    return Path(shutil.copy(tiny_model_path, tmp_path / "model.onnx"))


def _load_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_cli_writes_json_and_thresholds(tmp_path, bench, model_copy):
    before = encoders.load(model_copy)
    assert before.contract.threshold_table == ()
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", str(model_copy), "--benchmark", str(bench),
                           "--split", "test", "--baselines", "pixels", "--json", str(out), "--write-thresholds"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| FPR | 1e-5 | 1e-4 | 1e-3 | 1e-2 | 1e-1 |" in proc.stdout
    assert "register of 8 types" in proc.stdout and "## Comparison" in proc.stdout
    res = json.loads(out.read_text())
    assert {"benchmark", "fprs", "models", "comparison", "thresholds_written", "notes"} <= set(res)
    assert res["benchmark"]["register_types"] == 8 and res["benchmark"]["unknown_queries"] == 6
    assert [m["kind"] for m in res["models"]] == ["model", "baseline"]
    m = res["models"][0]
    for key in ("table", "auroc", "top1_accuracy", "open_set", "identification", "encode", "n_pos", "n_neg",
                "register_size", "table_markdown", "roc", "worst", "fingerprint"):
        assert key in m, key
    assert m["n_pos"] == 24 and m["n_neg"] == 24 * 7
    assert [r["measurable"] for r in m["table"]] == [False, False, False, True, True]
    assert m["identification"]["register_size"] == {"types": 8, "exemplars": 8}
    assert m["encode"]["images"] == 8 + 24 + 6 and m["encode"]["images_per_s"] > 0
    assert len(res["comparison"]) == 2 and res["comparison"][0]["miss_ratio_vs_lite0"] is None
    # the measured table is now in the model's metadata, measurable rows only, at the target FPRs
    after = encoders.load(model_copy)
    rows = after.contract.threshold_table
    assert [r.fpr for r in rows] == [1e-2, 1e-1]
    assert [r.threshold for r in rows] == [r["threshold"] for r in m["table"] if r["measurable"]]
    assert "/test: 24 positive / 168 negative pairs" in after.contract.threshold_source
    assert after.fingerprint != before.fingerprint == m["fingerprint"]
    assert res["thresholds_written"]["new_fingerprint"] == after.fingerprint


def test_plots_and_two_models(tmp_path, bench, model_copy, other_tiny_model_path):
    ev = _load_script()
    out = tmp_path / "plots"
    rc = ev.main(["--model", str(model_copy), "--model", str(other_tiny_model_path), "--benchmark", str(bench),
                  "--split", "val", "--plots", str(out), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["det_open_set.png", "features_tiny-other.png", "features_tiny-test-model.png", "roc.png",
                     "score_histograms.png"]
    assert all(p.stat().st_size > 10_000 for p in out.glob("*.png"))
    res = json.loads((tmp_path / "r.json").read_text())
    assert [m["name"] for m in res["models"]] == ["tiny-test-model", "tiny-other"]
    assert encoders.load(model_copy).contract.threshold_table == ()  # not asked to write


def test_bad_benchmark_is_reported(tmp_path, model_copy, capsys):
    ev = _load_script()
    assert ev.main(["--model", str(model_copy), "--benchmark", str(tmp_path), "--split", "val"]) == 2
    assert "no such split directory" in capsys.readouterr().err


def test_query_type_without_register_exemplar_is_refused(tmp_path, model_copy, capsys):
    bench = make_benchmark(tmp_path / "b", n_types=3, n_queries=1, n_unknown_types=0, splits=("val",))
    shutil.rmtree(bench / "val" / "register" / "type02")
    ev = _load_script()
    assert ev.main(["--model", str(model_copy), "--benchmark", str(bench), "--split", "val"]) == 2
    assert "types without a register exemplar: ['type02']" in capsys.readouterr().err


def test_by_group_names_the_families_that_set_the_threshold():
    """Sibling templates of family 'a' look alike, 'b' stands apart: the negatives at the threshold
    are a -> a, and a query scoring under the threshold is counted as a miss of its family."""
    from retriever import metrics as M

    ev = _load_script()
    e = np.eye(4, dtype=np.float32)
    sib = np.array([0.9, 0.436, 0, 0], np.float32)
    sib /= np.linalg.norm(sib)
    labels = ["a-0", "a-1", "b-0"]
    reg = np.stack([e[0], sib, e[2]])
    sib2 = np.array([0.8, 0.6, 0, 0], np.float32)  # a capture of a-1: close to a-1, a bit less to a-0
    weak = np.array([0.5, 0, 0.6, 0.624], np.float32)  # a capture of b-0 far from its exemplar: a miss
    weak /= np.linalg.norm(weak)
    q = np.stack([e[0], sib2, weak])
    split = ev.Split(root=Path("."), split="val", register=[(Path(f"{x}.png"), x) for x in labels],
                     queries=[(Path(f"q{x}.jpg"), x) for x in labels], unknown=[])
    sets = M.pair_scores(q, labels, reg, labels)
    g = ev.by_group(sets, {"queries": q, "register": reg}, split, fpr=0.2)
    assert g["threshold"] is not None
    assert g["negative_pairs"] == {"a -> a": 1}
    assert g["misses"] == {"a": [0, 2], "b": [1, 1]}
    assert "| a -> a | 1 |" in ev.by_group_markdown(g)
    assert ev.type_group("wallpaper-flow-2") == "wallpaper-flow"


def test_several_splits_in_one_run_report_errors_on_siblings(tmp_path, tiny_model_path):
    """`--split` repeats; a look-alike split's manifest entries (sibling set, edit kind) give per-edit
    rows, and top-1 errors are counted as landing on a sibling (same set) or not."""
    root = make_benchmark(tmp_path / "b", n_types=6, n_queries=2, n_unknown_types=1,
                          splits=("test", "test-lookalike"))
    la = root / "test-lookalike"
    # rename the look-alike split's types into two sibling sets of three: fam-000-m0..m2, fam-001-m0..m2
    names = {f"type{t:02d}": f"payslip-{t // 3:03d}-m{t % 3}" for t in range(6)}
    for part in ("register", "queries"):
        for old, new in names.items():
            (la / part / old).rename(la / part / new)
    edits = [None, "count", "title"]
    entries = [{"type": new, "family": "payslip", "sibling": {"member": t % 3, "edit": edits[t % 3]}}
               for t, new in enumerate(names.values())]
    (root / "manifest.json").write_text(json.dumps({"splits": {"test-lookalike": {"register": entries, "unknown": []}}}))
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tiny_model_path), "--benchmark", str(root),
                           "--split", "test", "--split", "test-lookalike", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "## Every split, one run" in proc.stdout and "| edit that made the type |" in proc.stdout
    res = json.loads(out.read_text())
    assert set(res["by_split"]) == {"test", "test-lookalike"}
    assert res["benchmark"]["split"] == "test"  # the first split stays at the top level
    la_res = res["by_split"]["test-lookalike"]["models"][0]
    e = la_res["sibling_errors"]
    assert e["queries"] == 12 and 0 <= e["on_sibling"] <= e["top1_errors"] <= 12
    assert set(e["by_edit"]) == {"none", "count", "title"} and all(r["queries"] == 4 for r in e["by_edit"].values())
    assert set(_load_script().load_split(root, "test-lookalike").type_info) == set(names.values())
    assert "by_edit" not in res["by_split"]["test"]["models"][0]["sibling_errors"]


def test_sibling_errors_count_errors_within_the_set() -> None:
    mod = _load_script()
    from retriever import metrics as M

    types = np.array(["a-000-m0", "a-000-m1", "a-001-m0"])
    labels = ["a-000-m0", "a-000-m0", "a-000-m1", "a-001-m0"]
    pred = np.array([0, 1, 2, 2])  # right, wrong in its set, wrong in another set, right
    sets = M.ScoreSets(types=types, n_exemplars=3, pos=np.array([0.9, 0.5, 0.4, 0.8], np.float32),
                       neg=np.sort(np.array([0.1, 0.6, 0.7] * 4, np.float32)),
                       known_best=np.array([0.9, 0.6, 0.7, 0.8], np.float32), known_pred=pred,
                       known_correct=pred == np.array([0, 0, 1, 2]), unknown_best=np.zeros(0, np.float32),
                       unknown_pred=np.zeros(0, np.int64))
    info = {t: {"type": t, "family": "a", "sibling": {"edit": e}} for t, e in zip(types, [None, "count", None])}
    split = mod.Split(Path("."), "x", [(Path(t), t) for t in types], [(Path(str(i)), lab) for i, lab in enumerate(labels)],
                      [], type_info=info)
    e = mod.sibling_errors(sets, split, fpr=0.1)
    assert (e["top1_errors"], e["on_sibling"], e["share_on_sibling"]) == (2, 1, 0.5)
    assert e["by_edit"]["none"]["queries"] == 3 and e["by_edit"]["none"]["top1"] == 2 / 3
    assert e["by_edit"]["count"] == {"queries": 1, "top1": 0.0, "tpr@0.1": 0.0}
