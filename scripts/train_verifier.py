#!/usr/bin/env python
"""Train a learned comparison step for verification (issue 13, experiment).

    python scripts/train_verifier.py --data ~/.cache/docretriever/verifier/train --out runs/verifier

Verification registers a capture onto its top candidates and, by a fixed rule, scores each candidate by
how well the aligned page matches it where the candidates differ.  Here a small CNN scores each candidate
from the aligned page, the candidate's page, the candidates' mean page, where they differ and where the
capture covers the frame, trained on sibling sets of training families (scripts/verifier_data.py):

* listwise: a softmax over the candidates, the capture's own type the target;
* open set: with probability --p-absent the capture's own type is left out of the candidates and the
  target is uniform, so a capture of an unregistered sibling lifts none of its registered siblings (the
  fixed rule is never taught that).

Its scores, centred over the candidates, replace the rule's deltas (``delta_i = s_i - mean(s)``).  Checkpoints
every epoch (resumable); keeps the epoch with the best held-out sets' listwise accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

CHANNELS = 6


def features(qg: torch.Tensor, cg: torch.Tensor, seen: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, K, CHANNELS, G, G) inputs: capture, candidate, their difference, the candidate against the
    candidates' mean, where the candidates differ (normalised), where the capture covers the frame.
    ``qg`` (B, G, G), ``cg`` (B, K, G, G), ``seen`` (B, G, G), ``valid`` (B, K) marks real candidates."""
    v = valid.float()[:, :, None, None]
    n = v.sum(1).clamp(min=1)
    mean = (cg * v).sum(1) / n
    where = ((cg - mean[:, None]).abs() * v).sum(1) / n
    where = where / where.flatten(1).amax(1).clamp(min=1e-3)[:, None, None]
    q = qg[:, None].expand_as(cg)
    return torch.stack([q, cg, q - cg, cg - mean[:, None], where[:, None].expand_as(cg) * v,
                        seen[:, None].expand_as(cg)], dim=2)


class Comparator(nn.Module):
    """(N, CHANNELS, G, G) -> (N,) score of a candidate given the aligned capture."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = CHANNELS
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))[:, 0]


class Verifier(nn.Module):
    """(qg, cg, seen, valid) -> (B, K) candidate scores; invalid candidates -inf."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 32)) -> None:
        super().__init__()
        self.comparator = Comparator(widths)

    def forward(self, qg: torch.Tensor, cg: torch.Tensor, seen: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, k = cg.shape[:2]
        x = features(qg, cg, seen, valid)
        s = self.comparator(x.flatten(0, 1)).view(b, k)
        return s.masked_fill(~valid, float("-inf"))


def load_verifier(path: str | os.PathLike) -> Verifier:
    st = torch.load(path, weights_only=False)
    model = Verifier(tuple(st["widths"]))
    model.load_state_dict(st["model"])
    return model.eval()


def learned_deltas(model: Verifier, query, cands: list) -> np.ndarray:
    """encoders.pageprint.verify_deltas with this checkpoint as the learned comparison (the same registration
    and centring; all 0 when the capture registers onto none of the first two)."""
    from encoders import pageprint as P

    def score(**feeds: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(*(torch.from_numpy(feeds[n]) for n in ("qg", "cg", "seen", "valid"))).numpy()

    got = P.aligned(query, cands) if len(cands) >= 2 else None
    if got is None:
        return np.zeros(len(cands), np.float32)
    return P.compare(got[0], got[1], np.stack([c.grid for c in cands]), P.LEARNED, score)


def export_onnx(ckpt: str | os.PathLike, out: str | os.PathLike, name: str = "docretriever-verifier-1") -> None:
    """The checkpoint as ONNX (inputs qg (1, G, G), cg (1, K, G, G), seen (1, G, G), valid (1, K) bool; output
    scores (1, K)), with its name and the training it came from in the metadata: what encoders/pageprint runs."""
    import onnx

    model = load_verifier(ckpt)
    g = 96
    args = (torch.zeros(1, g, g), torch.zeros(1, 5, g, g), torch.ones(1, g, g), torch.ones(1, 5, dtype=torch.bool))
    tmp = Path(str(out) + ".tmp")
    torch.onnx.export(model, args, str(tmp), input_names=["qg", "cg", "seen", "valid"], output_names=["scores"],
                      dynamic_axes={"cg": {1: "k"}, "valid": {1: "k"}, "scores": {1: "k"}}, opset_version=17,
                      dynamo=False)
    m = onnx.load(str(tmp))
    st = torch.load(ckpt, weights_only=False)
    meta = {"name": name, "grid": str(g), "widths": ",".join(map(str, st["widths"])), "epoch": str(st["epoch"]),
            "held_out": json.dumps(st["metrics"])}
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(tmp))
    os.replace(tmp, out)


def load(data: Path) -> dict[str, np.ndarray]:
    parts = [dict(np.load(p)) for p in sorted(data.glob("shard-*.npz"))]
    if not parts:
        raise SystemExit(f"{data}: no shards (run scripts/verifier_data.py)")
    out = {"grids": [], "qg": [], "seen": [], "member": [], "set_of": []}
    n_sets = 0
    for d in parts:
        for k in ("grids", "qg", "seen", "member"):
            out[k].append(d[k])
        out["set_of"].append(d["set_of"] + n_sets)
        n_sets += len(d["grids"])
    return {k: np.concatenate(v) for k, v in out.items()}


def batch(d: dict[str, np.ndarray], rows: np.ndarray, rng: np.random.Generator, p_absent: float, train: bool,
          p_foreign: float = 0.0):
    grids = d["grids"][d["set_of"][rows]].astype(np.float32)         # (B, K, G, G)
    qg = d["qg"][rows].astype(np.float32)
    seen = d["seen"][rows].astype(np.float32)
    member = d["member"][rows].astype(np.int64)
    b, k = grids.shape[:2]
    if train and p_foreign > 0:  # a search's candidates are not always siblings: other sets' pages among them
        for i in np.flatnonzero(rng.random(b) < p_foreign):
            others = [j for j in range(k) if j != member[i]]
            for j in rng.choice(others, size=int(rng.integers(1, len(others) + 1)), replace=False):
                grids[i, j] = d["grids"][int(rng.integers(len(d["grids"]))), int(rng.integers(k))]
    valid = np.ones((b, k), bool)
    absent = rng.random(b) < p_absent
    valid[absent, member[absent]] = False
    if train:  # the same flips and transposition of every page of a capture
        for i in range(b):
            t = int(rng.integers(8))
            f = lambda x: np.ascontiguousarray(np.rot90(x, t % 4, axes=(-2, -1)))  # noqa: E731
            if t >= 4:
                grids[i], qg[i], seen[i] = grids[i][..., ::-1], qg[i][..., ::-1], seen[i][..., ::-1]
            grids[i], qg[i], seen[i] = f(grids[i]), f(qg[i]), f(seen[i])
    target = np.zeros((b, k), np.float32)
    target[np.arange(b), member] = 1.0
    target[absent] = valid[absent] / valid[absent].sum(1, keepdims=True)
    return (torch.from_numpy(qg), torch.from_numpy(grids), torch.from_numpy(seen), torch.from_numpy(valid),
            torch.from_numpy(target), torch.from_numpy(absent))


def rule_scores(qg: torch.Tensor, cg: torch.Tensor, seen: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The fixed rule (encoders.pageprint.compare with RULE) on the same inputs, for comparison; centred
    scores, which change neither the ranking nor a candidate's lift over the candidates' mean."""
    from encoders import pageprint as P

    out = torch.full(valid.shape, float("-inf"))
    for b in range(len(qg)):
        idx = torch.nonzero(valid[b])[:, 0].tolist()
        out[b, idx] = torch.from_numpy(P.compare(qg[b].numpy(), seen[b].numpy(), cg[b, idx].numpy(), P.RULE))
    return out


def evaluate(model: Verifier | None, d: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, float]:
    """Held-out sets: top-1 among the candidates when the own type is there, and when it is not, how far
    the best candidate stands out from the mean (in units of the known captures' own lift)."""
    if model is not None:
        model.eval()
    rng = np.random.default_rng(0)
    hits, n, spread, lift = 0, 0, [], []
    with torch.no_grad():
        for i in range(0, len(rows), 128):
            qg, cg, seen, valid, target, absent = batch(d, rows[i:i + 128], rng, 0.5, False)
            s = model(qg, cg, seen, valid) if model is not None else rule_scores(qg, cg, seen, valid)
            known = ~absent
            hits += int((s[known].argmax(1) == target[known].argmax(1)).sum())
            n += int(known.sum())
            fin = torch.isfinite(s)
            mean = torch.where(fin, s, torch.zeros_like(s)).sum(1) / fin.sum(1)
            if known.any():  # the own type's lift over the candidates' mean
                lift += (s[known].gather(1, target[known].argmax(1, keepdim=True))[:, 0] - mean[known]).tolist()
            if absent.any():  # an unregistered sibling: how far its best candidate stands out
                spread += (s[absent].amax(1) - mean[absent]).tolist()
    if model is not None:
        model.train()
    scale = float(np.mean(lift)) if lift else 1.0
    return {"top1": hits / max(n, 1), "own_lift": scale,
            "absent_lift_rel": float(np.mean(spread)) / scale if spread and scale else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("~/.cache/docretriever/verifier/train").expanduser())
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "verifier")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--p-absent", type=float, default=0.3)
    ap.add_argument("--p-foreign", type=float, default=0.3, help="captures whose other candidates include other sets'")
    ap.add_argument("--widths", default="8,16,32,32")
    ap.add_argument("--held-out", type=float, default=0.1, help="share of sibling sets kept for model selection")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--export", type=Path, default=None, metavar="ONNX",
                    help="only export OUT/best.pt to this ONNX file (encoders/default/docretriever-verifier.onnx)")
    a = ap.parse_args()
    if a.export is not None:
        export_onnx(a.out / "best.pt", a.export)
        print(f"wrote {a.export}")
        return 0
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    a.out.mkdir(parents=True, exist_ok=True)
    d = load(a.data)
    n_sets = int(d["set_of"].max()) + 1
    held = np.random.default_rng(0).random(n_sets) < a.held_out
    tr = np.flatnonzero(~held[d["set_of"]])
    va = np.flatnonzero(held[d["set_of"]])
    widths = tuple(int(x) for x in a.widths.split(","))
    model = Verifier(widths)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    steps = a.epochs * (len(tr) // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=steps, pct_start=0.1)
    start, best = 0, -1.0
    ck = a.out / "last.pt"
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        model.load_state_dict(st["model"]), opt.load_state_dict(st["opt"]), sched.load_state_dict(st["sched"])
        start, best = st["epoch"] + 1, st["best"]
    print(f"{len(tr)} training captures, {len(va)} held-out ({n_sets} sets); widths {widths}; "
          f"{sum(p.numel() for p in model.parameters())} parameters", flush=True)
    print("the fixed rule on the held-out sets:", json.dumps(evaluate(None, d, va)), flush=True)
    log = (a.out / "metrics.jsonl").open("a")
    for ep in range(start, a.epochs):
        rng = np.random.default_rng(1000 + ep)
        order = rng.permutation(tr)
        t0, tot = time.time(), 0.0
        for i in range(len(order) // a.batch):
            qg, cg, seen, valid, target, _ = batch(d, order[i * a.batch:(i + 1) * a.batch], rng, a.p_absent, True,
                                                   a.p_foreign)
            s = model(qg, cg, seen, valid)
            logp = torch.log_softmax(s, 1).masked_fill(~valid, 0.0)
            loss = -(target * logp).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach())
        m = evaluate(model, d, va)
        row = {"epoch": ep, "loss": tot / max(1, len(order) // a.batch), **m, "seconds": round(time.time() - t0, 1)}
        print(json.dumps(row), flush=True)
        log.write(json.dumps(row) + "\n")
        log.flush()
        if m["top1"] > best:
            best = m["top1"]
            torch.save({"model": model.state_dict(), "widths": widths, "epoch": ep, "metrics": m}, a.out / "best.pt")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": ep,
                    "best": best}, ck.with_suffix(".tmp"))
        os.replace(ck.with_suffix(".tmp"), ck)
    return 0


if __name__ == "__main__":
    sys.exit(main())
