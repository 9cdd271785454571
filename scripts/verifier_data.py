#!/usr/bin/env python
"""Training data for a learned comparison step of verification (issue 13, experiment).

    python scripts/verifier_data.py --sets 400 --captures 3 --workers 2 --out ~/.cache/docretriever/verifier/train

Verification (encoders/pageprint.py) registers a capture onto its candidates and compares the aligned page
with each candidate where the candidates differ, by a fixed rule.  This makes what a learned comparison
would be trained on: sibling sets of TRAINING families only (encoders.training.synth.TRAIN_FAMILIES; the
benchmark's families stay held out), each member's clean specimen as the gallery would keep its print, and
captures of other fills of each member ("train_wide" capture preset, the encoder's training preset, not the
benchmark's "eval"), registered exactly as the product registers them.  Per capture it keeps the aligned
page (GRID x GRID), the mask of where it covers the frame, and which member it is; per set the members'
grids.  Shards of --shard sets each, so an interrupted run resumes.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import dataclasses
import hashlib
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from encoders import pageprint as P  # noqa: E402
from encoders.capture import TRAIN_WIDE, simulate_capture  # noqa: E402

cv2.setNumThreads(1)
RENDER_MARGIN = 1.5


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


def make_set(i: int, members: int, captures: int) -> dict[str, np.ndarray] | None:
    """One sibling set: members' grids, and per capture its aligned page, mask and member (None if the
    set cannot be rendered)."""
    from encoders.training.synth import FAMILIES, TRAIN_FAMILIES
    from encoders.training.synth.siblings import render_sibling, sibling_set

    fam = TRAIN_FAMILIES[i % len(TRAIN_FAMILIES)]
    ts = _seed("verifier-train", fam, i) % 10 ** 9
    sibs = sibling_set(fam, ts, members)
    prints = [P.unpack(P.pack(P.of_image(render_sibling(s, 0, 1.0)))) for s in sibs]
    grids = np.stack([p.grid for p in prints]).astype(np.float16)
    qg, seen, who, order = [], [], [], []
    for m, s in enumerate(sibs):
        for k in range(1, captures + 1):
            rng = np.random.default_rng(_seed("verifier-capture", fam, ts, m, k))
            width = int(rng.integers(TRAIN_WIDE.width[0], TRAIN_WIDE.width[1] + 1))
            scale = float(min(1.0, max(0.25, RENDER_MARGIN * width / FAMILIES[fam].size[0])))
            doc = render_sibling(s, k, scale)
            jpg = simulate_capture(doc, rng, dataclasses.replace(TRAIN_WIDE, width=(width, width)))
            img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
            q = P.of_image(img, keep_gray=True)
            cand = rng.permutation(members)  # the reference is whichever member comes first, as in a search
            got = P.aligned(q, [prints[j] for j in cand])
            if got is None:
                continue
            qg.append(got[0].astype(np.float16))
            seen.append(got[1].astype(bool))
            who.append(m)
            order.append(cand)
    if not qg:
        return None
    return {"grids": grids, "qg": np.stack(qg), "seen": np.stack(seen), "member": np.asarray(who, np.int8),
            "order": np.stack(order).astype(np.int8), "family": np.asarray([fam]), "template_seed": np.asarray([ts])}


def _shard(args: tuple[int, int, int, int, Path]) -> str:
    start, n, members, captures, out = args
    path = out / f"shard-{start:05d}.npz"
    if path.exists():
        return f"{path.name}: kept"
    t0 = time.time()
    sets = [x for x in (make_set(i, members, captures) for i in range(start, start + n)) if x is not None]
    offs = np.cumsum([0] + [len(x["qg"]) for x in sets])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, grids=np.stack([x["grids"] for x in sets]), qg=np.concatenate([x["qg"] for x in sets]),
             seen=np.concatenate([x["seen"] for x in sets]), member=np.concatenate([x["member"] for x in sets]),
             set_of=np.repeat(np.arange(len(sets)), np.diff(offs)), order=np.concatenate([x["order"] for x in sets]),
             family=np.concatenate([x["family"] for x in sets]))
    tmp.replace(path)
    return f"{path.name}: {len(sets)} sets, {offs[-1]} captures, {time.time() - t0:.0f}s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("~/.cache/docretriever/verifier/train").expanduser())
    ap.add_argument("--sets", type=int, default=400)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--captures", type=int, default=3)
    ap.add_argument("--shard", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, min(a.shard, a.sets - s), a.members, a.captures, a.out) for s in range(0, a.sets, a.shard)]
    if a.workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(a.workers) as pool:
            for line in pool.imap_unordered(_shard, jobs):
                print(line, flush=True)
    else:
        for j in jobs:
            print(_shard(j), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
