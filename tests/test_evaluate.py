"""scripts/evaluate.py on a tiny synthetic benchmark with the tiny model."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from encoders.contract import LocalMap
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
                       unknown_pred=np.zeros(0, np.int64),
                       known_loo_best=np.array([0.7, 0.6, 0.7, 0.1], np.float32))  # best wrong type per query
    info = {t: {"type": t, "family": "a", "sibling": {"edit": e}} for t, e in zip(types, [None, "count", None])}
    split = mod.Split(Path("."), "x", [(Path(t), t) for t in types], [(Path(str(i)), lab) for i, lab in enumerate(labels)],
                      [], type_info=info)
    e = mod.sibling_errors(sets, split, fpr=0.1)
    assert (e["top1_errors"], e["on_sibling"], e["share_on_sibling"]) == (2, 1, 0.5)
    assert e["by_edit"]["none"]["queries"] == 3 and e["by_edit"]["none"]["top1"] == 2 / 3
    assert e["by_edit"]["count"] == {"queries": 1, "top1": 0.0, "tpr@0.1": 0.0}
    # FPR 0.1 of 12 negatives: the threshold must clear 0.7, the best wrong type of queries 0 and 2; query 0
    # ranks its own type first (its runner-up sets the threshold), query 2 does not
    o = e["over_threshold"]
    assert (o["queries"], o["ranked_right"]) == (2, 1)
    assert o["negative"] == pytest.approx(0.7) and o["negative"] < o["threshold"]
    assert "1 of them still rank their own type first" in mod.sibling_errors_markdown(e, fpr=0.1)


# --------------------------------------------------------------------------------------------------
# Models with a local map: the re-ranked score (what the product answers with) and the cosine alone
# --------------------------------------------------------------------------------------------------
def _conv_model(path: Path, name: str = "tiny-conv") -> Path:
    """A tiny contract-honouring model whose graph has a 4-D intermediate to expose as a local map:
    a strided conv's (N, 6, 4, 4) output, flattened and projected to the 16-d feature."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from encoders.contract import ModelContract, write_contract

    rng = np.random.default_rng(3)
    conv = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((6 * 4 * 4, 16)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["img", "conv"], ["fmap"], strides=[8, 8]),
         helper.make_node("Flatten", ["fmap"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["raw"]),
         helper.make_node("LpNormalization", ["raw"], ["feats"], axis=1, p=2)],
        name, [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["batch", 16])],
        [numpy_helper.from_array(conv, "conv"), numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    write_contract(str(path), ModelContract(name=name, input_size=(32, 32), dim=16, colour="BGR"))
    return path


@pytest.fixture(scope="module")
def conv_models(tmp_path_factory) -> dict[str, Path]:
    """The conv model plain, with its map as a local output (k 3, weight 2.4), and the same at weight 0."""
    from encoders.local import add_local_output

    d = tmp_path_factory.mktemp("conv")
    plain = _conv_model(d / "plain.onnx")
    add_local_output(plain, "fmap", d / "local.onnx", k=3, weight=2.4)
    add_local_output(plain, "fmap", d / "local0.onnx", k=3, weight=0.0)
    return {"plain": plain, "local": d / "local.onnx", "local0": d / "local0.onnx"}


def _load_ablation():
    spec = importlib.util.spec_from_file_location("ablate_local_rerank", SCRIPT.parent / "ablate_local_rerank.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _top_mask(sim: np.ndarray, k: int) -> np.ndarray:
    mask = np.zeros(sim.shape, bool)
    np.put_along_axis(mask, np.argsort(-sim, axis=1)[:, :k], True, axis=1)
    return mask


_METRICS = ("table", "auroc", "top1_accuracy", "open_set", "identification", "scores", "roc", "worst", "by_group",
            "sibling_errors", "open_set_dir", "n_pos", "n_neg", "register_size")


def test_reranked_moves_only_each_rows_top_k_as_the_ablation_scores_it():
    ev, abl = _load_script(), _load_ablation()
    rng = np.random.default_rng(0)
    q = _unit(rng.standard_normal((7, 16))).astype(np.float32)
    r = _unit(rng.standard_normal((10, 16))).astype(np.float32)
    qm = _unit(rng.standard_normal((7, 9, 5))).astype(np.float16)
    rm = _unit(rng.standard_normal((10, 9, 5))).astype(np.float16)
    sim = q @ r.T
    got = ev.reranked(sim, qm, rm, LocalMap("local", 3, 2.4), chunk=2)  # several chunks
    top = _top_mask(sim, 3)
    assert np.array_equal(got[~top], sim[~top]) and np.all(got[top] != sim[top])
    assert np.allclose(got, abl.rescored(sim, qm.astype(np.float32), rm.astype(np.float32), 3, 2.4), atol=1e-5)
    assert np.array_equal(ev.reranked(sim, qm, rm, LocalMap("local", 3, 0.0)), sim)
    few = ev.reranked(sim[:, :2], qm, rm[:2], LocalMap("local", 5, 2.4))  # a register smaller than k: all of it
    assert np.allclose(few, abl.rescored(sim[:, :2], qm.astype(np.float32), rm[:2].astype(np.float32), 5, 2.4),
                       atol=1e-5) and not np.allclose(few, sim[:, :2])


def _family_split(ev, rng):
    """Two families of three registered types (one with two exemplars) and one unregistered type
    each; random features and maps."""
    reg = [f"fam{f}-{t}" for f in "ab" for t in range(3)] + ["fama-0"]
    qs = [lab for lab in reg[:6] for _ in range(2)]
    unk = [f"fam{f}-9" for f in "ab" for _ in range(2)]
    def items(prefix: str, labels: list[str]) -> list[tuple[Path, str]]:
        return [(Path(f"{prefix}{i}.png"), x) for i, x in enumerate(labels)]

    split = ev.Split(Path("."), "val", items("r", reg), items("q", qs), items("u", unk))
    feats: dict[str, np.ndarray] = {}
    for part, n in (("register", len(reg)), ("queries", len(qs)), ("unknown", len(unk))):
        feats[part] = _unit(rng.standard_normal((n, 8))).astype(np.float32)
        feats[f"{part}_maps"] = _unit(rng.standard_normal((n, 9, 5))).astype(np.float16)
    return split, feats


def test_score_sets_rerank_the_whole_register_and_each_dense_register_within_itself():
    from retriever import metrics as M

    ev, abl = _load_script(), _load_ablation()
    split, feats = _family_split(ev, np.random.default_rng(5))
    rr = LocalMap("local", 3, 2.4)
    r_lab, q_lab, u_lab = (np.asarray([lab for _, lab in getattr(split, part)])
                           for part in ("register", "queries", "unknown"))
    f32 = {k: v.astype(np.float32) for k, v in feats.items()}

    def rescored(part: str, rows: np.ndarray, ri: np.ndarray) -> np.ndarray:
        sim = f32[part][rows] @ f32["register"][ri].T
        return abl.rescored(sim, f32[f"{part}_maps"][rows], f32["register_maps"][ri], 3, 2.4)

    def reference(ri, qi, ui):  # the ablation's re-ranked matrices, each type scoring its best exemplar
        return abl.score_sets(rescored("queries", qi, ri), q_lab[qi], rescored("unknown", ui, ri), r_lab[ri])

    def same(a, b) -> bool:
        return all(np.allclose(getattr(a, f), getattr(b, f), atol=1e-5)
                   for f in ("pos", "neg", "known_best", "known_correct", "unknown_best"))

    every = np.arange
    full = ev._sets_for(feats, split, rerank=rr)
    assert same(full, reference(every(len(r_lab)), every(len(q_lab)), every(len(u_lab))))
    assert not same(full, ev._sets_for(feats, split))
    sliced_differs, refs = [], []
    for g in ev.dense_groups(split):
        ri, qi, ui = (np.flatnonzero([ev.type_group(x) == g for x in lab]) for lab in (r_lab, q_lab, u_lab))
        dense = ev._sets_for(feats, split, lambda lab, g=g: ev.type_group(lab) == g, rr)
        refs.append(reference(ri, qi, ui))
        assert same(dense, refs[-1])  # its own top-k ...
        whole = rescored("queries", qi, every(len(r_lab)))
        sliced_differs.append(not same(dense, abl.score_sets(whole[:, ri], q_lab[qi], None, r_lab[ri])))
    assert ev.dense_groups(split) == ["fama", "famb"] and any(sliced_differs)  # ... not the whole register's
    # weight 0 goes through every step and gives the cosine bit for bit
    zero, cos = ev._sets_for(feats, split, rerank=LocalMap("local", 3, 0.0)), ev._sets_for(feats, split)
    for f in ("pos", "neg", "known_best", "known_pred", "unknown_best", "known_second", "unknown_second"):
        assert np.array_equal(getattr(zero, f), getattr(cos, f), equal_nan=True), f
    # the negatives that set a threshold are counted on the re-ranked score too
    g = ev.by_group(full, feats, split, fpr=0.2, rerank=rr)
    assert sum(g["negative_pairs"].values()) == int(np.sum(full.neg >= g["threshold"])) > 0
    op = ev.evaluate_open_set(feats, split, full, M.DEFAULT_FPRS, rerank=rr)
    assert op["dense"]["register"]["types_per_register"] == {"fama": 3, "famb": 3}
    pooled = M.threshold_table(np.concatenate([r.pos for r in refs]), np.concatenate([r.neg for r in refs]),
                               M.DEFAULT_FPRS)[-1]
    assert op["dense"]["pair_table"][-1]["threshold"] == pytest.approx(pooled["threshold"], abs=1e-5)
    assert op["dense"]["pair_table"] != ev.evaluate_open_set(feats, split, cos, M.DEFAULT_FPRS)["dense"]["pair_table"]


def test_local_model_reports_reranked_and_cosine_rows_and_writes_both_tables(tmp_path, bench, conv_models, capsys):
    ev = _load_script()
    local = Path(shutil.copy(conv_models["local"], tmp_path / "local.onnx"))
    # the re-ranked matrix of the real maps moves each query's top-k exemplars only
    split = ev.load_split(bench, "test")
    feats, _ = ev.encode_split(ev.load_candidates([str(local)], [])[0], split, 8, local=True)
    assert feats["queries_maps"].shape == (24, 16, 6) and feats["queries_maps"].dtype == np.float16
    sim = feats["queries"] @ feats["register"].T
    moved = ev.reranked(sim, feats["queries_maps"], feats["register_maps"], LocalMap("local", 3, 2.4)) != sim
    assert moved.any() and not (moved & ~_top_mask(sim, 3)).any()

    out = tmp_path / "r.json"
    assert ev.main(["--model", str(local), "--model", str(conv_models["plain"]), "--benchmark", str(bench),
                    "--split", "test", "--json", str(out), "--write-thresholds"]) == 0
    stdout = capsys.readouterr().out
    assert "re-ranked: each query's top-3 exemplars" in stdout and "and 2 re-ranked rows" in stdout
    res = json.loads(out.read_text())
    rer, cos, plain = res["models"]
    assert [r["name"] for r in res["models"]] == ["tiny-conv", "tiny-conv [cosine]", "tiny-conv#2"]
    assert [r["name"] for r in res["comparison"]] == ["tiny-conv", "tiny-conv [cosine]", "tiny-conv#2"]
    assert (rer["scoring"], rer["rerank"]) == ("reranked", {"k": 3, "weight": 2.4})
    assert (cos["scoring"], cos["rerank"]) == ("cosine", None)
    assert "scoring" not in plain  # models without a local map: rows as before
    assert all(cos[k] == plain[k] for k in _METRICS)  # the cosine alone is the plain model's answer
    assert rer["scores"] != cos["scores"] and rer["n_neg"] == cos["n_neg"]
    after = encoders.load(local).contract
    def measured(row: dict) -> list[float]:
        return [r["threshold"] for r in row["table"] if r["measurable"]]

    assert [r.threshold for r in after.threshold_table] == measured(cos)
    assert [r.threshold for r in after.local.threshold_table] == measured(rer) != measured(cos)
    assert [r.fpr for r in after.local.threshold_table] == [1e-2, 1e-1]
    assert "re-ranked: top-3 by the local map, weight 2.4" in after.local.threshold_source
    assert "re-ranked" not in after.threshold_source and (after.local.k, after.local.weight) == (3, 2.4)
    assert res["thresholds_written"]["new_fingerprint"] == encoders.load(local).fingerprint


def test_weight_zero_reranked_row_equals_the_cosine_row(tmp_path, bench, conv_models):
    ev = _load_script()
    out = tmp_path / "r.json"
    assert ev.main(["--model", str(conv_models["local0"]), "--benchmark", str(bench), "--split", "val",
                    "--json", str(out)]) == 0
    rer, cos = json.loads(out.read_text())["models"]
    assert rer["rerank"] == {"k": 3, "weight": 0.0} and cos["name"] == "tiny-conv [cosine]"
    assert all(rer[k] == cos[k] for k in _METRICS)
