#!/usr/bin/env python
"""Build the zero-shot retrieval benchmark (validation and test splits) from fixed seeds.

    python scripts/build_benchmark.py [--out ~/.cache/docretriever/benchmark-v1] [--types 300]
        [--queries-per-type 8] [--unknown-types 100] [--unknown-captures 5] [--seed 0]
        [--workers 1] [--small] [--force]

Why this shape: the product enrols a new document type from ONE clean exemplar and must then
recognise phone/scan captures of other instances of that type (same template, different personal
data), and reject documents of types never enrolled.  So each split holds

    <split>/register/<type>/specimen.png   clean render (fill 0) = the enrolled exemplar
    <split>/queries/<type>/<k>.jpg         "eval"-strength captures of fills k = 1..Q
    <split>/unknown/<type>/<k>.jpg         captures of types that are NOT registered (open set)

with ``val`` for model selection and ``test`` for the final report; the two splits use disjoint
template seeds and disjoint wallpapers.  Everything is zero-shot: synthetic types come only from
``HELDOUT_FAMILIES`` (never rendered in training), and real graphic "types" are crops of the
Plasma wallpapers in /usr/share/wallpapers (training reads /usr/share/backgrounds and icons).
Captures use the "eval" capture preset, which is harder than and different from training's.

Two more splits, ``val-lookalike`` and ``test-lookalike``, hold *sibling sets*
(``encoders.training.synth.siblings``): a held-out template and siblings of it with one element
changed (a block added, removed or moved, another count of repeated marks, another title, another
colour of one region), as real registers hold revisions of one form or one issuer's card in several
versions.  Of each set's ``lookalike_members`` types the last ``lookalike_unknown`` are not
registered, so every set is a dense register with its own look-alike unknowns.  Types are named
``<family>-<set>-m<member>``.

The build is deterministic: every image's random stream is derived from (seed, split, type,
capture), so the result does not depend on --workers or on build order, and manifest.json holds
no timestamps (its sha256 identifies the content; build time goes to build-info.json).  The tree
is built in a temporary sibling directory and renamed into place when complete.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import dataclasses
import hashlib
import json
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from encoders.capture import EVAL, simulate_capture  # noqa: E402

cv2.setNumThreads(1)

FORMAT = "docretriever-benchmark"
VERSION = 1
DEFAULT_OUT = Path("~/.cache/docretriever/benchmark-v1").expanduser()
SPLITS = ("val", "test")
LOOKALIKE_SPLITS = ("val-lookalike", "test-lookalike")  # sibling sets: one template, one element changed
ALL_SPLITS = SPLITS + LOOKALIKE_SPLITS
WALLPAPER_ROOT = Path("/usr/share/wallpapers")
WALLPAPER_SHARE = 0.17        # fraction of registered types that are wallpaper crops
WALLPAPER_UNKNOWN_SHARE = 0.2  # fraction of unknown types that are wallpaper crops ...
WALLPAPER_UNKNOWN_MAX = 20     # ... at most: a split's wallpapers give ~75 distinct crops, and more unknown
                               # crops would take them from the register (which must stay as in v1)
WALLPAPER_LONG_SIDE = 1000     # a crop is shown at document-like resolution
SPECIMEN_PNG_LEVEL = 3
P_CLUTTER_BACKGROUND = 0.3     # captures whose background slivers show another paper
RENDER_MARGIN = 1.5            # query fills are rendered at >= 1.5x the capture's resolution


class BenchmarkError(RuntimeError):
    """The benchmark cannot be built as asked; the message says what and where."""


def stable_seed(*parts: object) -> int:
    """Seed from values, stable across processes and machines (Python's hash() is salted)."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


# ------------------------------------------------------------------------------------------------
# sources
# ------------------------------------------------------------------------------------------------

def wallpaper_files(root: Path = WALLPAPER_ROOT) -> list[Path]:
    """Largest light-theme image of each Plasma wallpaper package (dark variants and phone
    sizes are the same artwork: using them would make near-duplicate types)."""
    out = []
    for d in sorted(p for p in root.glob("*/contents/images") if p.is_dir()):
        best, area = None, 0
        for f in d.iterdir():
            m = re.fullmatch(r"(\d+)x(\d+)\.(png|jpe?g)", f.name, re.IGNORECASE)
            if m and int(m[1]) * int(m[2]) > area:
                best, area = f, int(m[1]) * int(m[2])
        if best is not None:
            out.append(best)
    return out


def load_wallpaper(path: Path, max_side: int = 2560) -> np.ndarray:
    flag = cv2.IMREAD_COLOR
    if path.suffix.lower() in (".jpg", ".jpeg"):
        flag = cv2.IMREAD_REDUCED_COLOR_2  # DCT-domain halving: the crops are shown at ~1000 px
    img = cv2.imread(str(path), flag)
    if img is None:
        raise BenchmarkError(f"{path}: cannot decode wallpaper image")
    s = max_side / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return img


def _thumb(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)


def wallpaper_crops(img: np.ndarray, rng: np.random.Generator, n: int, taken: list[np.ndarray]
                    ) -> list[tuple[int, int, int, int]]:
    """Up to ``n`` non-overlapping, textured, mutually distinct document-shaped crops (x, y, w, h).

    ``taken`` holds thumbnails of crops already chosen anywhere in the benchmark; a crop too
    similar to one of them (mean abs difference of 16x16 thumbnails < 14) is rejected, so two
    types are never the same smooth gradient.
    """
    H, W = img.shape[:2]
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(60 * n):
        if len(boxes) >= n:
            break
        aspect = float(rng.choice([1.586, 0.707, 1.414, 1.0, 2.2]))  # card, page, landscape, square, ticket
        hh = int(rng.uniform(0.3, 0.7) * H)
        ww = int(hh * aspect)
        if ww > 0.8 * W:
            ww = int(0.8 * W)
            hh = int(ww / aspect)
        if hh < 200 or ww < 200:
            continue
        x, y = int(rng.integers(0, W - ww + 1)), int(rng.integers(0, H - hh + 1))
        if any(x < bx + bw and bx < x + ww and y < by + bh and by < y + hh for bx, by, bw, bh in boxes):
            continue
        crop = img[y:y + hh, x:x + ww]
        small = cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if gray.std() < 12 or cv2.Laplacian(gray, cv2.CV_32F).std() < 3:
            continue  # flat sky / gradient: no identity to recognise
        th = _thumb(crop)
        if any(float(np.abs(th - t).mean()) < 14 for t in taken):
            continue
        taken.append(th)
        boxes.append((x, y, ww, hh))
    return boxes


def wallpaper_specimen(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    crop = img[y:y + h, x:x + w]
    s = WALLPAPER_LONG_SIDE / max(w, h)
    return cv2.resize(crop, (max(8, round(w * s)), max(8, round(h * s))),
                      interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


# ------------------------------------------------------------------------------------------------
# plan
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Config:
    types: int = 300
    queries_per_type: int = 8
    unknown_types: int = 300
    unknown_captures: int = 4
    seed: int = 0
    wallpapers: bool = True
    lookalike_sets: int = 50     # sibling sets per look-alike split (held-out families in turn)
    lookalike_members: int = 6   # types per set: the template and members - 1 siblings
    lookalike_unknown: int = 1   # of which this many (the last) are not registered: look-alike unknowns

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SMALL = Config(types=12, queries_per_type=3, unknown_types=4, unknown_captures=2, lookalike_sets=2,
               lookalike_members=4)


@dataclasses.dataclass
class TypeTask:
    """One type's work: its specimen (registered types only) and its captures."""
    split: str
    name: str
    role: str                   # "register" | "unknown"
    source: str                 # "synthetic" | "wallpaper"
    captures: int
    family: str = ""
    template_seed: int = 0
    member: int = -1            # >= 0: that member of the template's sibling set (look-alike splits)
    wallpaper: str = ""
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    image: np.ndarray | None = None  # wallpaper specimen (built in the parent)

    def meta(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.name, "source": self.source}
        if self.source == "synthetic":
            d.update(family=self.family, template_seed=self.template_seed, specimen_fill_seed=0,
                     capture_fill_seeds=list(range(1, self.captures + 1)))
            if self.member >= 0:
                from encoders.training.synth.siblings import sibling

                d.update(sibling=sibling(self.family, self.template_seed, self.member).describe())
        else:
            d.update(file=self.wallpaper, crop_xywh=list(self.box), captures=self.captures)
        return d


def _split_counts(total: int, share: float, available: int) -> tuple[int, int]:
    wp = min(available, int(round(total * share)))
    return total - wp, wp


def plan(cfg: Config, heldout: list[str]) -> tuple[dict[str, list[TypeTask]], dict[str, Any]]:
    """All type tasks per split, plus wallpaper bookkeeping for the manifest."""
    tasks: dict[str, list[TypeTask]] = {s: [] for s in ALL_SPLITS}
    wp_info: dict[str, Any] = {s: [] for s in ALL_SPLITS}
    files = wallpaper_files() if cfg.wallpapers else []
    order = np.random.default_rng(stable_seed("wallpaper-order", cfg.seed)).permutation(len(files))
    by_split = {s: [files[i] for j, i in enumerate(order) if j % len(SPLITS) == k] for k, s in enumerate(SPLITS)}
    taken: list[np.ndarray] = []
    seen_seeds: set[tuple[str, int]] = set()
    for split in SPLITS:
        want_reg = int(round(cfg.types * WALLPAPER_SHARE)) if files else 0
        want_unk = min(WALLPAPER_UNKNOWN_MAX, int(round(cfg.unknown_types * WALLPAPER_UNKNOWN_SHARE))) if files else 0
        wp_tasks: list[TypeTask] = []
        pool = by_split[split]
        if want_reg + want_unk and pool:
            for n_left, path in zip(range(len(pool), 0, -1), pool):
                need = want_reg + want_unk - len(wp_tasks)
                if need <= 0:
                    break
                img = load_wallpaper(path)
                rng = np.random.default_rng(stable_seed("wallpaper-crops", cfg.seed, split, path.parent.parent.parent.name))
                # spread evenly; a wallpaper with few usable crops leaves its share to the next ones
                boxes = wallpaper_crops(img, rng, int(np.ceil(need / n_left)), taken)
                wp_info[split].append({"file": str(path), "crops": len(boxes)})
                for j, b in enumerate(boxes):
                    pkg = path.parent.parent.parent.name.lower()
                    wp_tasks.append(TypeTask(split, f"wallpaper-{pkg}-{j}", "", "wallpaper", 0,
                                             wallpaper=str(path), box=b, image=wallpaper_specimen(img, b)))
        # too few distinct crops: share them between register and unknown in the asked ratio
        n_wp_reg = want_reg if len(wp_tasks) >= want_reg + want_unk else \
            min(want_reg, round(len(wp_tasks) * want_reg / max(1, want_reg + want_unk)))
        for i, t in enumerate(wp_tasks):
            t.role = "register" if i < n_wp_reg else "unknown"
            t.captures = cfg.queries_per_type if t.role == "register" else cfg.unknown_captures
        n_wp_unk = len(wp_tasks) - n_wp_reg
        for role, total, n_wp, ncap in (("register", cfg.types, n_wp_reg, cfg.queries_per_type),
                                        ("unknown", cfg.unknown_types, n_wp_unk, cfg.unknown_captures)):
            for i in range(max(0, total - n_wp)):
                fam = heldout[i % len(heldout)]
                ts = stable_seed("benchmark", VERSION, cfg.seed, split, role, fam, i // len(heldout)) % 10**9
                if (fam, ts) in seen_seeds:
                    raise BenchmarkError(f"template seed collision for {fam} {ts}; change --seed")
                seen_seeds.add((fam, ts))
                tasks[split].append(TypeTask(split, f"{fam}-{'u' if role == 'unknown' else ''}{i // len(heldout):03d}",
                                             role, "synthetic", ncap, family=fam, template_seed=ts))
        tasks[split].extend(wp_tasks)
    for split in LOOKALIKE_SPLITS:
        tasks[split] = lookalike_tasks(cfg, heldout, split, seen_seeds)
    return tasks, wp_info


def lookalike_tasks(cfg: Config, heldout: list[str], split: str, seen_seeds: set[tuple[str, int]]) -> list[TypeTask]:
    """Sibling sets of held-out templates: members ``0 .. members - unknown - 1`` registered (a dense
    register of look-alikes), the rest unknown.  Type ``<family>-<set>-m<member>``: the group of a
    type (its name without the last part) is its sibling set."""
    n_reg = cfg.lookalike_members - cfg.lookalike_unknown
    out = []
    for i in range(cfg.lookalike_sets):
        fam = heldout[i % len(heldout)]
        ts = stable_seed("lookalike", VERSION, cfg.seed, split, fam, i // len(heldout)) % 10**9
        if (fam, ts) in seen_seeds:
            raise BenchmarkError(f"template seed collision for {fam} {ts}; change --seed")
        seen_seeds.add((fam, ts))
        for k in range(cfg.lookalike_members):
            role = "register" if k < n_reg else "unknown"
            out.append(TypeTask(split, f"{fam}-{i:03d}-m{k}", role, "synthetic",
                                cfg.queries_per_type if role == "register" else cfg.unknown_captures,
                                family=fam, template_seed=ts, member=k))
    return out


def render_type(task: TypeTask, fill: int, scale: float = 1.0) -> np.ndarray:
    """Fill ``fill`` of a synthetic type (a sibling-set member on the look-alike splits)."""
    if task.member >= 0:
        from encoders.training.synth.siblings import render_sibling, sibling

        return render_sibling(sibling(task.family, task.template_seed, task.member), fill, scale)
    from encoders.training.synth import render_document

    return render_document(task.family, task.template_seed, fill, scale)


# ------------------------------------------------------------------------------------------------
# work
# ------------------------------------------------------------------------------------------------

N_CLUTTER = 8
_CLUTTER: dict[tuple[int, str, int], np.ndarray] = {}


def clutter_background(seed: int, split: str, heldout: list[str], i: int) -> np.ndarray:
    """Another paper lying on the desk (an unregistered template at half scale), shown in
    background slivers.  Rendered on first use and cached; deterministic in (seed, split, i)."""
    key = (seed, split, i)
    if key not in _CLUTTER:
        from encoders.training.synth import render_document

        fam = heldout[i % len(heldout)]
        _CLUTTER[key] = render_document(fam, stable_seed("clutter", seed, split, i) % 10**9, 0, scale=0.5)
    return _CLUTTER[key]


def render_scale(family: str, capture_width: int) -> float:
    """Render scale for a fill captured at ``capture_width``: RENDER_MARGIN x the capture's
    pixels (the capture still downsamples, as a camera does), never above the specimen's 1.0."""
    from encoders.training.synth import FAMILIES

    return float(min(1.0, max(0.25, RENDER_MARGIN * capture_width / FAMILIES[family].size[0])))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def run_task(task: TypeTask, root: Path, seed: int, heldout: list[str]) -> dict[str, Any]:
    """Render and capture one type; returns its manifest entry."""
    part = "queries" if task.role == "register" else "unknown"
    if task.role == "register":
        spec = task.image if task.source == "wallpaper" else render_type(task, 0)
        ok, buf = cv2.imencode(".png", spec, [cv2.IMWRITE_PNG_COMPRESSION, SPECIMEN_PNG_LEVEL])
        if not ok:
            raise BenchmarkError(f"PNG encoding failed for {task.split}/register/{task.name}")
        _write(root / task.split / "register" / task.name / "specimen.png", buf.tobytes())
    for k in range(1, task.captures + 1):
        rng = np.random.default_rng(stable_seed("capture", VERSION, seed, task.split, task.role, task.name, k))
        # The capture width is drawn here (same distribution as EVAL's) so the fill can be
        # rendered at a matching scale: rendering pixels the capture throws away is most of the cost.
        width = int(rng.integers(EVAL.width[0], EVAL.width[1] + 1))
        if task.source == "wallpaper":
            doc = task.image
        else:
            doc = render_type(task, k, render_scale(task.family, width))
        bg = None
        if rng.random() < P_CLUTTER_BACKGROUND:
            bg = clutter_background(seed, task.split, heldout, int(rng.integers(N_CLUTTER)))
        params = dataclasses.replace(EVAL, width=(width, width))
        _write(root / task.split / part / task.name / f"{k}.jpg", simulate_capture(doc, rng, params, background=bg))
    return task.meta()


def _run_star(args: tuple[TypeTask, Path, int, list[str]]) -> dict[str, Any]:
    return run_task(*args)


# ------------------------------------------------------------------------------------------------
# build
# ------------------------------------------------------------------------------------------------

def manifest_for(cfg: Config, heldout: list[str], results: dict[str, dict[str, list[dict[str, Any]]]],
                 wp_info: dict[str, Any]) -> dict[str, Any]:
    import encoders.training.synth as synth

    splits = {}
    total_q = total_u = 0
    for split in ALL_SPLITS:
        reg, unk = results[split]["register"], results[split]["unknown"]
        n_q = sum(len(r.get("capture_fill_seeds", [])) or r.get("captures", 0) for r in reg)
        n_u = sum(len(r.get("capture_fill_seeds", [])) or r.get("captures", 0) for r in unk)
        total_q += n_q
        total_u += n_u
        by_src: dict[str, int] = {}
        for r in reg:
            key = r["family"] if r["source"] == "synthetic" else "wallpaper"
            by_src[key] = by_src.get(key, 0) + 1
        splits[split] = {"register_types": len(reg), "queries": n_q, "unknown_types": len(unk),
                         "unknown_captures": n_u, "register_types_by_source": dict(sorted(by_src.items())),
                         "wallpapers": wp_info[split], "register": reg, "unknown": unk}
    return {
        "format": FORMAT, "version": VERSION, "name": f"benchmark-v{VERSION}", "seed": cfg.seed,
        "types_per_split": cfg.types, "queries_per_type": cfg.queries_per_type,
        "unknown_types_per_split": cfg.unknown_types, "captures_per_unknown_type": cfg.unknown_captures,
        "total_queries": total_q, "total_unknown_captures": total_u,
        "capture_preset": EVAL.name, "capture_params": dataclasses.asdict(EVAL),
        "config": cfg.as_dict(),
        "generator": {"module": synth.__name__, "families": list(heldout),
                      "note": "HELDOUT_FAMILIES only: never rendered in training (zero-shot)"},
        "sources": {"synthetic": "encoders.training.synth.render_document(family, template_seed, fill_seed)",
                    "wallpapers": str(WALLPAPER_ROOT) if cfg.wallpapers else None,
                    "not_used": ["/usr/share/backgrounds and icons (training)", "package documentation (reserved)", "card-game data (reserved)"]},
        "layout": {"register": "<split>/register/<type>/specimen.png (fill 0)",
                   "queries": "<split>/queries/<type>/<k>.jpg (fill k >= 1, eval capture; fill rendered "
                              f"at scale min(1, {RENDER_MARGIN} x capture width / family width))",
                   "unknown": "<split>/unknown/<type>/<k>.jpg (unregistered types)"},
        "versions": {"numpy": np.__version__, "opencv": cv2.__version__},
        "splits": splits,
    }


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def existing_config(out: Path) -> dict[str, Any] | None:
    man = out / "manifest.json"
    if not man.is_file():
        return None
    try:
        return json.loads(man.read_text()).get("config")
    except (OSError, json.JSONDecodeError):
        return None


def build(out: Path, cfg: Config, workers: int = 1, force: bool = False, log=print) -> dict[str, Any]:
    """Build (or reuse) the benchmark at ``out``; returns the manifest."""
    out = out.expanduser().resolve()
    if out.exists():
        have = existing_config(out)
        if have == cfg.as_dict() and not force:
            log(f"{out}: up to date (same configuration); use --force to rebuild")
            return json.loads((out / "manifest.json").read_text())
        if not force:
            raise BenchmarkError(f"{out}: exists and was built with a different configuration "
                                 f"({have or 'no manifest.json'}); pass --force to replace it")
    try:
        from encoders.training.synth import HELDOUT_FAMILIES
    except ImportError as exc:
        raise BenchmarkError(f"the synthetic document generator is not importable ({exc})") from None
    heldout = list(HELDOUT_FAMILIES)
    if not heldout:
        raise BenchmarkError("HELDOUT_FAMILIES is empty: no zero-shot families to build from")
    t0 = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        manifest, elapsed = _build_into(tmp, cfg, heldout, workers, t0, log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-built tree behind
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log(summary(manifest, out, elapsed))
    return manifest


def _build_into(tmp: Path, cfg: Config, heldout: list[str], workers: int, t0: float, log
                ) -> tuple[dict[str, Any], float]:
    tasks, wp_info = plan(cfg, heldout)
    log(f"planned in {time.time() - t0:.1f}s: " + ", ".join(
        f"{s}: {sum(t.role == 'register' for t in tasks[s])} register + "
        f"{sum(t.role == 'unknown' for t in tasks[s])} unknown types" for s in ALL_SPLITS))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {"register": [], "unknown": []} for s in ALL_SPLITS}
    flat = [t for s in ALL_SPLITS for t in tasks[s]]
    args = [(t, tmp, cfg.seed, heldout) for t in flat]
    n_done, last = 0, time.time()
    metas: list[dict[str, Any]] = []
    pool = None
    if workers > 1:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(workers)
    try:
        for m in (pool.imap(_run_star, args, chunksize=4) if pool else map(_run_star, args)):
            metas.append(m)
            n_done += 1
            if time.time() - last > 15:
                log(f"  {n_done}/{len(flat)} types ({time.time() - t0:.0f}s)")
                last = time.time()
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    for t, m in zip(flat, metas):
        results[t.split][t.role].append(m)
    manifest = manifest_for(cfg, heldout, results, wp_info)
    _atomic_json(tmp / "manifest.json", manifest)
    elapsed = time.time() - t0
    cpu = os.times()
    _atomic_json(tmp / "build-info.json", {"built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                           "build_seconds": round(elapsed, 1), "workers": workers,
                                           "cpu_seconds": round(cpu.user + cpu.system + cpu.children_user
                                                                + cpu.children_system, 1),
                                           "manifest_sha256": hashlib.sha256((tmp / "manifest.json").read_bytes()).hexdigest()})
    return manifest, elapsed


def summary(manifest: dict[str, Any], out: Path, elapsed: float) -> str:
    lines = [f"benchmark {manifest['name']} at {out} (seed {manifest['seed']}, capture preset "
             f"{manifest['capture_preset']}, built in {elapsed:.0f}s)"]
    for s in ALL_SPLITS:
        d = manifest["splits"][s]
        src = ", ".join(f"{k} {v}" for k, v in d["register_types_by_source"].items())
        lines.append(f"  {s}: {d['register_types']} register types, {d['queries']} queries, "
                     f"{d['unknown_types']} unknown types x captures = {d['unknown_captures']}")
        lines.append(f"        by source: {src}")
    lines.append(f"  families (held out from training): {', '.join(manifest['generator']['families'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    ap.add_argument("--types", type=int, help="registered types per split (default 300)")
    ap.add_argument("--queries-per-type", type=int, help="captures per registered type (default 8)")
    ap.add_argument("--unknown-types", type=int, help="unregistered types per split (default 300)")
    ap.add_argument("--unknown-captures", type=int, help="captures per unregistered type (default 4)")
    ap.add_argument("--lookalike-sets", type=int, help="sibling sets per look-alike split (default 50)")
    ap.add_argument("--lookalike-members", type=int, help="types per sibling set (default 6, of which 1 unknown)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-wallpapers", action="store_true", help="synthetic types only")
    ap.add_argument("--small", action="store_true", help="tiny benchmark for CI (12 types, 3 queries, 4 unknown)")
    ap.add_argument("--workers", type=int, default=1, help="processes (default 1: the machine is shared)")
    ap.add_argument("--force", action="store_true", help="rebuild even if OUT exists")
    a = ap.parse_args(argv)
    base = SMALL if a.small else Config()
    cfg = Config(
        types=a.types if a.types is not None else base.types,
        queries_per_type=a.queries_per_type if a.queries_per_type is not None else base.queries_per_type,
        unknown_types=a.unknown_types if a.unknown_types is not None else base.unknown_types,
        unknown_captures=a.unknown_captures if a.unknown_captures is not None else base.unknown_captures,
        seed=a.seed, wallpapers=not a.no_wallpapers,
        lookalike_sets=a.lookalike_sets if a.lookalike_sets is not None else base.lookalike_sets,
        lookalike_members=a.lookalike_members if a.lookalike_members is not None else base.lookalike_members)
    if cfg.lookalike_sets < 0 or not cfg.lookalike_unknown < cfg.lookalike_members <= 12:
        ap.error(f"--lookalike-members must be in [{cfg.lookalike_unknown + 1}, 12] and --lookalike-sets >= 0")
    for name in ("types", "queries_per_type"):
        if getattr(cfg, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if cfg.unknown_types < 0 or cfg.unknown_captures < 0:
        ap.error("--unknown-types and --unknown-captures must be >= 0")
    # SIGTERM -> SystemExit, so the temporary tree is removed on kill as on Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        build(a.out, cfg, workers=max(1, a.workers), force=a.force)
    except BenchmarkError as exc:
        print(f"build_benchmark: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
