#!/usr/bin/env python
"""What self-calibration costs: `indexer build` with and without it, an add, a remove, and the
re-measure every write pays on large galleries.

    python scripts/bench_selfcal.py [--types 1000] [--big 10000 --big 1000000] [--out results.md]

1. **Builds** (the shipped model, one thread): ``register_data/register`` (12 types) and a register of
   ``--types`` rendered documents (the generator's training families at half scale, cached under
   ~/.cache/docretriever/; timing only, nothing is trained or evaluated on it), each built twice,
   without and with self-calibration, in the same run; then one new type added and one removed.
2. **Re-measure at scale**: galleries of ``--big`` precomputed vectors (4 exemplars per type,
   clustered, ``--index auto``) and the largest probe set the default settings ever hold (2,000 types
   x 4 captures = 8,000 probes): the search + table every write (add, remove, compact) then costs.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def rendered_register(n: int, root: Path) -> Path:
    """``n`` document types (one specimen each), rendered once and cached."""
    import cv2

    from encoders.training.synth import FAMILIES, render_document

    done = root / ".complete"
    if done.is_file() and int(done.read_text()) == n:
        return root
    if root.exists():
        shutil.rmtree(root)
    fams = sorted(FAMILIES)
    for i in range(n):
        fam = fams[i % len(fams)]
        d = root / f"{fam}-{i // len(fams):04d}"
        d.mkdir(parents=True)
        cv2.imwrite(str(d / "specimen.png"), render_document(fam, 50_000 + i, 0, scale=0.5))
    done.write_text(str(n))
    return root


def time_builds(name: str, register: Path, enc: Any, work: Path) -> dict[str, Any]:
    from indexer.gallery import Gallery

    row: dict[str, Any] = {"register": name}
    for on in (False, True):
        out = work / f"{name}-{'on' if on else 'off'}"
        t0 = time.perf_counter()
        g = Gallery.build(register, out, enc, self_calibrate=on)
        row["on" if on else "off"] = time.perf_counter() - t0
    rec = g.self_calibration or {}
    row.update(types=rec.get("types"), probes=rec.get("probes"), probe_s=rec.get("probe_seconds"),
               measure_s=rec.get("seconds"))
    # one more type (its probes are simulated), then one removed (stored probes re-scored only)
    extra = work / f"{name}-extra" / "zz_new_type"
    extra.mkdir(parents=True)
    src = next(p for p in sorted(register.rglob("*")) if p.is_file() and not p.name.startswith("."))
    import cv2

    img = cv2.imread(str(src))
    cv2.imwrite(str(extra / "specimen.png"), cv2.flip(img, 1))  # a different image of the same size
    t0 = time.perf_counter()
    g.add([extra.parent], force=True)
    row["add_one_type"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    g.remove(labels=["zz_new_type"])
    row["remove_one_type"] = time.perf_counter() - t0
    return row


def remeasure_at_scale(n: int, work: Path, dim: int = 256) -> dict[str, Any]:
    from indexer.gallery import Gallery
    from indexer.importer import EncoderInfo
    from indexer.selfcal import Probes, Settings, measure

    rng = np.random.default_rng(n)
    per_type = 4
    n_types = n // per_type
    centres = rng.standard_normal((n_types, dim)).astype(np.float32)
    vecs = np.repeat(centres, per_type, axis=0) + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    labels = [f"t{i // per_type:07d}" for i in range(n)]
    info = EncoderInfo(name="bench", fingerprint="bench-" + "0" * 58, dim=dim)
    t0 = time.perf_counter()
    g = Gallery.create(work / f"big-{n}", info, index_spec="auto")
    g.add_vectors(vecs, labels, encoder=info, check_near_duplicates=False)
    t_import = time.perf_counter() - t0
    s = Settings()
    types = rng.choice(n_types, size=min(s.max_types, n_types), replace=False)
    k = 4
    rows = np.repeat(types * per_type, k)
    pf = vecs[rows] + 0.25 * rng.standard_normal((len(rows), dim)).astype(np.float32)
    pf /= np.linalg.norm(pf, axis=1, keepdims=True)
    probes = Probes(rows.astype(np.int64), np.asarray([labels[r] for r in rows], dtype=object), pf)
    t0 = time.perf_counter()
    rec = measure(g, probes, g.count, n_types, s, {"name": "bench", "fingerprint": info.fingerprint})
    t_measure = time.perf_counter() - t0
    out = {"exemplars": n, "types": n_types, "index": g.plan.type, "probes": len(probes), "import_s": t_import,
           "remeasure_s": t_measure, "status": rec["status"]}
    shutil.rmtree(work / f"big-{n}", ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", type=int, default=1000, help="types of the rendered register (default 1000)")
    ap.add_argument("--big", type=int, action="append", help="gallery sizes for the re-measure cost "
                                                             "(default 10000 and 1000000)")
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/docretriever").expanduser())
    ap.add_argument("--out", type=Path, help="also write the tables here (markdown)")
    a = ap.parse_args(argv)
    import cv2

    import encoders

    cv2.setNumThreads(1)
    enc = encoders.load(threads=1)
    lines = [f"# Self-calibration cost (model {enc.name}, one thread, load {os.getloadavg()[0]:.2f})", ""]
    with tempfile.TemporaryDirectory(prefix="bench-selfcal-") as tmp:
        work = Path(tmp)
        regs = [("register_data (12 types)", REPO / "register_data" / "register")]
        t0 = time.perf_counter()
        big_reg = rendered_register(a.types, a.cache / f"bench-selfcal-register-{a.types}")
        print(f"rendered/cached {a.types}-type register in {time.perf_counter() - t0:.0f} s", flush=True)
        regs.append((f"rendered ({a.types} types)", big_reg))
        lines += ["| register | build without (s) | build with self-calibration (s) | added (s) | ratio | probes | "
                  "of which simulate+encode (s) | measure (s) | add one type (s) | remove one type (s) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, reg in regs:
            r = time_builds(name.split()[0], reg, enc, work)
            lines.append(f"| {name} | {r['off']:.1f} | {r['on']:.1f} | {r['on'] - r['off']:.1f} | "
                         f"{r['on'] / r['off']:.2f} | {r['probes']} | {r['probe_s']:.1f} | {r['measure_s']:.2f} | "
                         f"{r['add_one_type']:.2f} | {r['remove_one_type']:.2f} |")
            print(lines[-1], flush=True)
        lines += ["", "Re-measure on every write, largest default probe set (2,000 types x 4 captures):", "",
                  "| exemplars | types | index | probes | import (s) | re-measure per write (s) |",
                  "|---:|---:|---|---:|---:|---:|"]
        for n in a.big or [10_000, 1_000_000]:
            r = remeasure_at_scale(n, work)
            lines.append(f"| {r['exemplars']:,} | {r['types']:,} | {r['index']} | {r['probes']:,} | {r['import_s']:.1f} | "
                         f"{r['remeasure_s']:.2f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
