#!/usr/bin/env python
"""How far a self-calibrated gallery's FPIR lands from its target, on the benchmark's real captures.

    python scripts/eval_selfcal.py --benchmark ~/.cache/docretriever/benchmark-v4 --split val \\
        [--model M.onnx] [--preset train --preset eval ...] [--json out.json]

For each capture preset: build galleries from the split's register with ``indexer``'s own code path
(self-calibration on), exactly as a user would: the **mixed** register (every type of the split)
and one **dense** register per held-out family (every template alike).  Then classify the split's
captures through :class:`retriever.Retriever` at ``--fpir`` targets read from each gallery's own
table, and measure what the targets promised: FPIR on the captures of unregistered look-alike
types (``unknown/``: other templates of the same families, and other wallpaper crops) and DIR on
the captures of registered types.  Dense rates are pooled over the families (each capture against
its own family's gallery).  The pair-table and raw-cosine rule are reported beside it.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for p in (str(REPO), str(REPO / "scripts")):
    if p not in sys.path:
        sys.path.insert(0, p)

import evaluate as E  # noqa: E402  (scripts/ sibling: benchmark loading, type groups)

TARGETS = (1e-2, 2e-2, 5e-2, 1e-1)


def _link_register(split: E.Split, keep: Any, root: Path) -> Path:
    """A register folder of the split's types that ``keep`` accepts (symlinks, nothing copied)."""
    root.mkdir(parents=True)
    for path, label in split.register:
        if keep(label):
            d = root / label
            d.mkdir(parents=True, exist_ok=True)
            (d / path.name).symlink_to(path.resolve())
    return root


def _rates(retriever: Any, qf: np.ndarray, qlab: Sequence[str], uf: np.ndarray, qm: np.ndarray | None = None,
           um: np.ndarray | None = None, qp: Sequence[Any] | None = None,
           up: Sequence[Any] | None = None) -> tuple[int, int, int, int]:
    """(right and accepted, known, accepted unknowns, unknowns) at the retriever's operating point
    (``qm``/``um``: the captures' local maps, for a gallery that re-ranks; ``qp``/``up``: their page
    prints, for one that verifies)."""
    kr = retriever.classify_features(qf, local=qm, pages=qp) if len(qf) else []
    ur = retriever.classify_features(uf, local=um, pages=up) if len(uf) else []
    hit = sum(r.accepted and r.label == lab for r, lab in zip(kr, qlab))
    return hit, len(kr), sum(r.accepted for r in ur), len(ur)


def evaluate_preset(preset: str, split: E.Split, feats: dict[str, np.ndarray], encoder: Any, work: Path,
                    targets: Sequence[float], verify: bool = False,
                    prints: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    from indexer.gallery import Gallery
    from indexer.selfcal import Settings, measure
    from retriever import Retriever
    from retriever.openset import RULES
    from retriever.thresholds import OperatingPoint

    groups = {"mixed": [("all", lambda lab: True)]}
    groups["dense"] = [(g, (lambda lab, g=g: E.type_group(lab) == g)) for g in E.dense_groups(split)]
    out: dict[str, Any] = {"preset": preset}
    for kind, regs in groups.items():
        tally = {t: {"fpir": [0, 0, 0, 0], "fpir_cosine_rule": [0, 0, 0, 0], "cosine_fpr": [0, 0, 0, 0]}
                 for t in targets}
        t_build = 0.0
        tables = {}
        for name, keep in regs:
            reg = _link_register(split, keep, work / preset / kind / name)
            t0 = time.perf_counter()
            # force: sibling types (the look-alike splits) are near-duplicates to the model, and a user
            # enrolling such a register must say so the same way (--force)
            g = Gallery.build(reg, work / preset / kind / f"{name}.gallery", encoder, self_calibrate=True,
                              self_calibration=Settings(preset=preset), force=True, verify=verify)
            t_build += time.perf_counter() - t0
            tables[name] = g.self_calibration
            qi = [i for i, (_, lab) in enumerate(split.queries) if keep(lab)]
            ui = [i for i, (_, lab) in enumerate(split.unknown) if keep(lab)]
            qf, uf = feats["queries"][qi], feats["unknown"][ui]
            qm, um = (feats["queries_maps"][qi], feats["unknown_maps"][ui]) if "queries_maps" in feats else (None, None)
            qlab = [split.queries[i][1] for i in qi]
            qp = [prints["queries"][i] for i in qi] if verify and prints else None
            up = [prints["unknown"][i] for i in ui] if verify and prints else None
            # the same probes, decided on the raw cosine: what the margin rule adds under self-calibration
            cos_rec = measure(g, g.probes(), g.count, len(g.label_counts()), Settings(preset=preset), g.encoder_info,
                              rule="cosine")
            cos_rows = {round(r["fpir"], 12): r for r in cos_rec["table"]}
            for t in targets:
                crow = cos_rows.get(round(t, 12))
                cos_op = None if not crow or crow["threshold"] is None else \
                    OperatingPoint("fpir", t, crow["threshold"], RULES["cosine"], "self-calibration, cosine rule")
                for how, kw in (("fpir", {"fpir": t}), ("fpir_cosine_rule", {"operating_point": cos_op}),
                                ("cosine_fpr", {"fpr": t})):
                    if how == "fpir_cosine_rule" and cos_op is None:
                        tally[t][how] = None
                        continue
                    try:
                        r = Retriever(g, encoder=encoder, top_k=2, **kw)
                    except Exception as exc:  # a row the gallery cannot measure
                        tally[t][how] = None
                        out.setdefault("errors", []).append(f"{kind}/{name} {how} {t:g}: {exc}")
                        continue
                    if tally[t][how] is not None:
                        tally[t][how] = [a + b for a, b in zip(tally[t][how],
                                                               _rates(r, qf, qlab, uf, qm, um, qp, up))]
        rows = []
        for t in targets:
            row: dict[str, Any] = {"target": t}
            for how, v in tally[t].items():
                row[how] = None if v is None else {"dir": v[0] / max(v[1], 1), "fpir": v[2] / max(v[3], 1),
                                                   "known": v[1], "unknown": v[3], "unknown_accepted": v[2]}
            rows.append(row)
        out[kind] = {"registers": len(regs), "rows": rows, "build_seconds": round(t_build, 1),
                     "probes": sum(int(tb.get("probes", 0)) for tb in tables.values()),
                     "tables": tables}
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = [f"### capture preset `{res['preset']}`", ""]
    for kind in ("mixed", "dense"):
        sec = res[kind]
        lines += [f"{kind} register ({sec['registers']} gallery/galleries; {sec['probes']} probes; build incl. "
                  f"self-calibration {sec['build_seconds']} s):", "",
                  "| target | self-calibrated FPIR measured | ratio to target | DIR | same, cosine rule: FPIR | DIR "
                  "| pair-table FPR row: FPIR | DIR |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sec["rows"]:
            a, b, c = r.get("fpir"), r.get("cosine_fpr"), r.get("fpir_cosine_rule")
            fa = "n/a" if a is None else f"{a['fpir']:.4f} ({a['unknown_accepted']}/{a['unknown']})"
            ra = "n/a" if a is None else f"{a['fpir'] / r['target']:.2f}"
            da = "n/a" if a is None else f"{a['dir']:.4f}"
            fb = "n/a" if b is None else f"{b['fpir']:.4f}"
            db = "n/a" if b is None else f"{b['dir']:.4f}"
            fc = "n/a" if c is None else f"{c['fpir']:.4f}"
            dc = "n/a" if c is None else f"{c['dir']:.4f}"
            lines.append(f"| {r['target']:g} | {fa} | {ra} | {da} | {fc} | {dc} | {fb} | {db} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", type=Path, required=True)
    ap.add_argument("--split", default="val", choices=E.SPLITS)
    ap.add_argument("--model", default=None, help="ONNX model (default: the shipped one)")
    ap.add_argument("--preset", action="append", help="capture preset(s) to compare [default: train]")
    ap.add_argument("--target", type=float, action="append", help=f"FPIR targets [default: {TARGETS}]")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--documents-only", action="store_true",
                    help="drop the real-image types (wallpaper-*: crops of a few pictures, look-alikes of each "
                         "other) from register, captures and unknowns: a register of documents alone")
    ap.add_argument("--verify", action="store_true",
                    help="galleries built with verify=True: captures verified by registration (encoders.pageprint)")
    a = ap.parse_args(argv)
    import encoders

    split = E.load_split(a.benchmark, a.split)
    if a.documents_only:
        import dataclasses

        doc = lambda items: [(p, lab) for p, lab in items if not lab.startswith("wallpaper")]  # noqa: E731
        split = dataclasses.replace(split, register=doc(split.register), queries=doc(split.queries),
                                    unknown=doc(split.unknown))
    if not split.unknown:
        print(f"error: {a.benchmark}/{a.split} has no unknown/ captures", file=sys.stderr)
        return 2
    enc = encoders.load(a.model, threads=1)
    cand = E.Candidate(enc.name, "model", enc, str(enc.path))
    rerank = E.rerank_of(enc)  # a model with a local map: galleries re-rank, so does the reference
    feats, _ = E.encode_split(cand, split, 32, local=rerank is not None)
    targets = tuple(sorted(a.target or TARGETS))
    prints = None
    if a.verify:
        from encoders import pageprint
        from encoders.decode import read_image

        side = 2 * pageprint.SIDE
        prints = {part: [pageprint.of_image(read_image(str(p), (side, side)), keep_gray=True)
                         for p, _ in getattr(split, part)] for part in ("queries", "unknown")}
    print(f"# Self-calibration on {split.root} split {a.split}, model {enc.name}: {len(split.types)} registered types, "
          f"{len(split.queries)} captures of them, {len(split.unknown)} captures of unregistered look-alike types\n")
    # the same run's reference: DIR at FPIR with thresholds read off the real unknowns themselves (what a
    # perfect calibration would give), per rule, and the pair table, on the mixed and dense registers
    from retriever import metrics as M
    from retriever import openset as O

    sets = E._sets_for(feats, split, rerank=rerank)
    oracle = E.evaluate_open_set(feats, split, sets, M.DEFAULT_FPRS,
                                 {"cosine": O.RULES["cosine"], O.DEFAULT_RULE.name: O.DEFAULT_RULE}, rerank=rerank)
    print("## Reference: thresholds read off the real unknowns (no calibration error)\n")
    print(E.open_set_markdown(oracle, O.DEFAULT_RULE.name), "\n")
    print("## Self-calibrated galleries\n")
    results = []
    with tempfile.TemporaryDirectory(prefix="selfcal-eval-") as tmp:
        for preset in a.preset or ["train"]:
            res = evaluate_preset(preset, split, feats, enc, Path(tmp), targets, verify=a.verify, prints=prints)
            results.append(res)
            print(markdown(res), flush=True)
    if a.json:
        E.write_json_atomic(a.json, {"benchmark": split.describe(), "model": enc.name, "fingerprint": enc.fingerprint,
                                     "targets": list(targets), "results": E.jsonable(results),
                                     "reference": E.jsonable(oracle)})
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
