#!/usr/bin/env python
"""Benchmark bulk classification: the `retriever run` pipeline vs a naive loop vs the Ray engine.

    python scripts/bench_bulk.py                      # full run: 20,000 A4 200 dpi scans, 1,000 types
    python scripts/bench_bulk.py --n 2000 --naive-n 300 --n-300dpi 500 --no-ray   # quick look

What it does, in one process per measured variant (so each peak RSS is that variant's own):

1. Generates realistic text-heavy scans with OpenCV drawing (header band, logo, title, columns
   of text, a table, signature; paper tint), A4 at 200 dpi (1700x2200) and 300 dpi (2480x3508),
   JPEG quality 85-90, cached under ~/.cache/docretriever/bench-bulk/.  A pool of ``--pool``
   distinct scans per resolution is generated; ``--n`` inputs cycle through it via a list file
   (every input is fully read and decoded; only the disk sees repeats, which the OS page cache
   would serve anyway for 20,000 x ~0.5 MB of recently written scans).
2. Builds a ``--types``-type gallery (one clean render per type) with the default model.
3. Measures, each in a subprocess: (a) ``run_bulk`` (local engine, 2 threads, batches of 32,
   Parquet output); (b) a naive pipeline in the reference project's style: full-resolution
   ``cv2.imread``, one image per inference call, a Python loop over a dict of register features
   computing one dot product at a time; (c) the Ray engine on the same inputs, if Ray is
   installed (a local 2-CPU instance; its start-up is reported separately).  The local pipeline and
   the naive loop first run an untimed warm-up in their process (64 scans / one scan: lazy imports,
   ONNX Runtime's first call); both timed parts include opening the gallery.
4. Prints a markdown table: scans/s, wall time, peak RSS of the main process (VmHWM) and the
   peak summed RSS of its whole process tree (sampled every 0.2 s; Ray's raylet, GCS and actors
   are children of the driver), the machine load (/proc/loadavg) around each run, and the bars.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

CACHE = Path(os.environ.get("DOCRETRIEVER_BENCH_CACHE", Path.home() / ".cache" / "docretriever" / "bench-bulk"))
SIZES = {200: (1700, 2200), 300: (2480, 3508)}  # A4 at 200 / 300 dpi, (width, height)
SYL = ["an", "be", "ci", "do", "er", "fa", "gi", "ho", "in", "ja", "ke", "lo", "mu", "na", "or", "pe", "qu", "ri",
       "sa", "te", "ul", "va", "we", "xi", "yo", "za", "st", "th", "ch", "nd"]


# ------------------------------------------------------------------------------ scan generation
def _word(r: np.random.Generator) -> str:
    return "".join(SYL[i] for i in r.integers(0, len(SYL), int(r.integers(1, 5))))


def _line(r: np.random.Generator, n: int) -> str:
    words = [_word(r) for _ in range(n)]
    if r.random() < 0.3:
        words.append(f"{int(r.integers(1, 99999)):,}.{int(r.integers(0, 99)):02d}")
    return " ".join(words)


def render_scan(type_id: int, fill_seed: int, w: int, h: int, scanned: bool = True) -> np.ndarray:
    """A text-heavy A4 document page of type ``type_id`` (layout) with content ``fill_seed``;
    ``scanned`` adds skew, blur and sensor noise (off for the clean register exemplars)."""
    import cv2

    t = np.random.default_rng(type_id * 7919 + 17)  # template: layout, colours, title
    f = np.random.default_rng(fill_seed * 104729 + 3)  # fill: text, numbers
    s = w / 1700.0
    paper = np.array([245, 245, 242]) - t.integers(0, 20, 3)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = paper.astype(np.uint8)
    ink = tuple(int(x) for x in t.integers(0, 70, 3))
    accent = tuple(int(x) for x in t.integers(30, 220, 3))
    font = int(t.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
                         cv2.FONT_HERSHEY_TRIPLEX]))
    m = int(110 * s)
    # header band, logo and title: the type's identity
    hb = int(h * t.uniform(0.05, 0.13))
    if t.random() < 0.7:
        cv2.rectangle(img, (0, 0), (w, hb), accent, -1)
    cx = int(t.choice([m + 60 * s, w - m - 60 * s]))
    if t.random() < 0.5:
        cv2.circle(img, (cx, hb // 2 + int(20 * s)), int(55 * s), ink, -1)
    else:
        cv2.rectangle(img, (cx - int(60 * s), int(20 * s)), (cx + int(60 * s), hb - int(10 * s) + int(40 * s)), ink, -1)
    title = " ".join(_word(t).upper() for _ in range(int(t.integers(1, 4))))
    cv2.putText(img, title, (int(w * t.uniform(0.22, 0.4)), hb + int(90 * s)), font, 2.2 * s, ink, max(2, int(4 * s)),
                cv2.LINE_AA)
    y = hb + int(170 * s)
    # address block / key-value fields
    for _ in range(int(t.integers(3, 7))):
        cv2.putText(img, f"{_word(t).capitalize()}: {_line(f, 3)}", (m, y), font, 0.85 * s, ink, max(1, int(2 * s)),
                    cv2.LINE_AA)
        y += int(42 * s)
    y += int(30 * s)
    ncol = int(t.integers(1, 3))
    colw = (w - 2 * m) // ncol
    body_end = h * (0.62 if t.random() < 0.6 else 0.84)  # room for a table, or a full page of text
    para = int(t.integers(4, 9))
    y0 = y
    for c in range(ncol):
        y = y0
        k = 0
        while y < body_end:
            cv2.putText(img, _line(f, int(colw / (120 * s))), (m + c * colw, y), font, 0.8 * s, ink,
                        max(1, int(2 * s)), cv2.LINE_AA)
            k += 1
            y += int(36 * s) + (int(24 * s) if k % para == 0 else 0)
    y += int(30 * s)
    if y < h * 0.8:  # a table
        rows, cols = int(t.integers(4, 10)), int(t.integers(3, 6))
        rh, cw = int(44 * s), (w - 2 * m) // cols
        cv2.rectangle(img, (m, y), (w - m, y + rh), accent, -1)
        for r_ in range(rows + 1):
            cv2.line(img, (m, y + r_ * rh), (w - m, y + r_ * rh), ink, max(1, int(2 * s)))
        for c in range(cols + 1):
            cv2.line(img, (m + c * cw, y), (m + c * cw, y + rows * rh), ink, max(1, int(2 * s)))
        for r_ in range(rows):
            for c in range(cols):
                txt = _word(t).upper() if r_ == 0 else (_word(f) if c == 0 else f"{f.integers(1, 9999)}")
                cv2.putText(img, txt, (m + c * cw + int(10 * s), y + r_ * rh + int(31 * s)), font, 0.7 * s, ink,
                            max(1, int(2 * s)), cv2.LINE_AA)
        y += rows * rh + int(40 * s)
    # signature and footer
    pts = np.cumsum(f.normal(0, 9 * s, (30, 2)), axis=0) + [w * 0.65, min(y + 80 * s, h * 0.9)]
    cv2.polylines(img, [pts.astype(np.int32)], False, (120, 40, 20), max(2, int(3 * s)), cv2.LINE_AA)
    cv2.line(img, (m, h - int(120 * s)), (w - m, h - int(120 * s)), accent, max(1, int(3 * s)))
    cv2.putText(img, _line(t, 6), (m, h - int(70 * s)), font, 0.7 * s, ink, max(1, int(2 * s)), cv2.LINE_AA)
    if scanned:  # scanner look: slight skew, optical blur, sensor noise (what makes real scans big)
        angle = f.uniform(-0.6, 0.6)
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        img = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        img = cv2.GaussianBlur(img, (3, 3), 0.7)
        noise = f.integers(-4, 5, (h, w, 1), dtype=np.int16)
        img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return img


def _gen_one(args: tuple[int, int, int, int, str, int]) -> None:
    import cv2

    cv2.setNumThreads(1)
    type_id, seed, w, h, path, quality = args
    img = render_scan(type_id, seed, w, h)
    tmp = path + ".tmp.jpg"
    cv2.imwrite(tmp, img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    os.replace(tmp, path)


def ensure_scans(dpi: int, pool: int, types: int) -> list[str]:
    """The pool of distinct scans at ``dpi`` (generated once, cached)."""
    w, h = SIZES[dpi]
    d = CACHE / f"scans-v2-{dpi}dpi"
    d.mkdir(parents=True, exist_ok=True)
    jobs, paths = [], []
    for i in range(pool):
        p = d / f"type{i % types:04d}-{i:06d}.jpg"
        paths.append(str(p))
        if not p.exists():
            jobs.append((i % types, i, w, h, str(p), 85 + i % 6))
    if jobs:
        from multiprocessing import Pool

        t0 = time.time()
        with Pool(2) as pool_:
            pool_.map(_gen_one, jobs, chunksize=8)
        print(f"generated {len(jobs)} scans at {dpi} dpi in {time.time() - t0:.0f} s -> {d}", file=sys.stderr)
    return paths


def ensure_gallery(types: int, verify: bool = False) -> Path:
    """A ``types``-label gallery (one clean render per type) for the default model, cached; ``verify``:
    the same register built with ``--verify`` (it keeps page prints and verifies its top candidates)."""
    import cv2

    import encoders
    from indexer.gallery import Gallery

    enc = encoders.load()
    out = CACHE / f"gallery-v2-{types}-{enc.fingerprint[:12]}{'-verify' if verify else ''}"
    if (out / "manifest.json").exists():
        return out
    reg = CACHE / f"register-v2-{types}"
    for i in range(types):
        p = reg / f"type{i:04d}" / "clean.png"
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), render_scan(i, 10**6 + i, 425, 550, scanned=False))
    t0 = time.time()
    Gallery.build(reg, out, enc, force=True, verify=verify)
    print(f"built a {types}-type {'verifying ' if verify else ''}gallery in {time.time() - t0:.0f} s -> {out}", file=sys.stderr)
    return out


def write_list(paths: list[str], n: int, name: str) -> Path:
    lst = CACHE / f"{name}.txt"
    lst.write_text("".join(paths[i % len(paths)] + "\n" for i in range(n)))
    return lst


# ------------------------------------------------------------------------------ measured variants
def _cpu_s() -> float:
    """CPU seconds (user + system, all threads) used by this process so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def child_pipeline(lst: str, gallery: str, out: str, engine: str) -> dict:
    import encoders
    from retriever.bulk import run_bulk

    t_all = time.monotonic()
    enc = encoders.load()
    ray_start = None
    if engine == "ray":
        import ray

        t = time.monotonic()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        ray_start = time.monotonic() - t
    # The threshold does not change the cost; a model without a threshold table needs an explicit one, and a
    # verifying gallery has no pair table for its verified scores (its self-calibration's FPIR rows serve).
    verifying = bool(json.loads((Path(gallery) / "manifest.json").read_text()).get("pages"))
    point = dict(fpir=1e-2) if verifying else dict(fpr=1e-2, threshold=None if enc.contract.threshold_table else 0.5)
    kw = dict(encoder=enc, workers=2, batch_size=32, overwrite=True, progress=False, engine=engine, **point)
    if engine == "local":
        # Warm-up, like the naive loop's: first-call costs (lazy imports, ONNX Runtime's first run) are
        # paid once per process, not per scan.  The timed job still opens the gallery and writes its output.
        warm = Path(lst).with_suffix(".warmup.txt")
        warm.write_text("\n".join(Path(lst).read_text().split()[:64]) + "\n")
        run_bulk(["@" + str(warm)], gallery, out + ".warmup.parquet", **kw)
    t, c = time.monotonic(), _cpu_s()
    s = run_bulk(["@" + lst], gallery, out, **kw)
    wall, cpu = time.monotonic() - t, _cpu_s() - c
    return {"rows": s["rows"], "errors": s["errors"], "wall_s": wall, "scans_per_s": s["rows"] / wall,
            "cpu_ms_per_scan": None if engine == "ray" else 1000 * cpu / max(s["rows"], 1), "ray_start_s": ray_start, "total_s": time.monotonic() - t_all, "vmhwm_mb": _vmhwm_mb()}


def child_naive(lst: str, gallery: str) -> dict:
    """The reference project's style: full decode, one image per call, one dot product at a time."""
    import cv2

    import encoders
    from encoders.preprocess import preprocess
    from indexer.gallery import Gallery

    cv2.setNumThreads(1)
    enc = encoders.load()
    paths = Path(lst).read_text().split()
    # Warm-up (one full pass of the loop body), then the timed part, which like the pipeline's includes
    # opening the register.
    warm = preprocess(cv2.imread(paths[0]), enc.contract)[None]
    enc.session.run([enc.contract.output_name], {enc.contract.input_name: warm})
    t, c = time.monotonic(), _cpu_s()
    g = Gallery.open(gallery, encoder=enc)
    ids, vecs = g.vectors()
    labels = g.labels_of(ids)
    register = {str(lab): v for lab, v in zip(labels, vecs)}
    results = []
    for p in paths:
        img = cv2.imread(p)
        x = preprocess(img, enc.contract)[None]
        (feat,) = enc.session.run([enc.contract.output_name], {enc.contract.input_name: x})
        feat = feat[0] / np.linalg.norm(feat[0])
        best, best_s = None, -2.0
        for lab, v in register.items():
            s = float(np.dot(feat, v))
            if s > best_s:
                best, best_s = lab, s
        results.append((p, best, best_s))
    wall, cpu = time.monotonic() - t, _cpu_s() - c
    return {"rows": len(results), "errors": 0, "wall_s": wall, "scans_per_s": len(results) / wall,
            "cpu_ms_per_scan": 1000 * cpu / max(len(results), 1), "vmhwm_mb": _vmhwm_mb()}


def _tree_sample(root: int) -> tuple[float, dict[int, float], set[str]]:
    """``root`` and all its descendants (from /proc; no psutil): summed RSS in MB, CPU seconds
    used so far per pid, and their scheduler autogroups."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            ppid = int(fields[1])
            cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            pages = int(Path(f"/proc/{d}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
        info[int(d)] = (pages, cpu)
    rss, cpus, groups, todo = 0, {}, set(), [root]
    while todo:
        pid = todo.pop()
        if pid in info:
            rss += info[pid][0]
            cpus[pid] = info[pid][1]
            try:
                groups.add(Path(f"/proc/{pid}/autogroup").read_text().split()[0])
            except OSError:
                pass
        todo.extend(children.get(pid, []))
    return rss * os.sysconf("SC_PAGE_SIZE") / 2**20, cpus, groups


def measure(argv: list[str]) -> dict:
    """Run one variant in a subprocess; sample its process tree's RSS; return its JSON report."""
    load0 = os.getloadavg()
    proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    peak = [0.0]
    cpu_by_pid: dict[int, float] = {}
    groups: set[str] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss, cpus, grp = _tree_sample(proc.pid)
            peak[0] = max(peak[0], rss)
            for pid, c in cpus.items():
                cpu_by_pid[pid] = max(cpu_by_pid.get(pid, 0.0), c)
            groups.update(grp)
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"variant {argv} failed with exit code {proc.returncode}")
    rep = json.loads(out.strip().splitlines()[-1])
    rep["tree_peak_mb"] = peak[0]
    rep["tree_cpu_s"] = sum(cpu_by_pid.values())  # whole run incl. start-up (sampled: may miss < 0.2 s)
    rep["tree_cpu_ms_per_scan"] = 1000 * rep["tree_cpu_s"] / max(rep["rows"], 1)
    rep["autogroups"] = len(groups)
    rep["load_before"] = load0
    rep["load_after"] = os.getloadavg()
    return rep


# ------------------------------------------------------------------------------ main
def _model_facts() -> str:
    """What the measured model is (name, input, dim, run batch), from its own contract."""
    import encoders

    enc = encoders.load()
    h, w = enc.input_size
    return f"{enc.name}, {h}x{w} input, {enc.dim}-d, {enc.run_batch} images per ONNX Runtime call"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="inputs for the pipeline and Ray runs (200 dpi)")
    ap.add_argument("--naive-n", type=int, default=2000, help="inputs for the naive run (it is slow)")
    ap.add_argument("--n-300dpi", type=int, default=2000, help="inputs for the 300 dpi pipeline run (0: skip)")
    ap.add_argument("--pool", type=int, default=1000, help="distinct scans generated per resolution")
    ap.add_argument("--types", type=int, default=1000, help="document types in the gallery")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    ap.add_argument("--ray-n", type=int, default=None, help="inputs for the Ray run (default: --n)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate the 200 dpi pipeline and Ray runs this many times (medians are compared): "
                         "on a shared machine the background load drifts between runs")
    ap.add_argument("--verify", action="store_true",
                    help="also run the pipeline on a verifying copy of the gallery (indexer build --verify), on "
                         "the naive run's inputs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--list", help=argparse.SUPPRESS)
    ap.add_argument("--gallery", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.child:
        if a.child == "naive":
            rep = child_naive(a.list, a.gallery)
        else:
            rep = child_pipeline(a.list, a.gallery, a.out, a.child)
        print(json.dumps(rep))
        return

    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    scans200 = ensure_scans(200, a.pool, a.types)
    scans300 = ensure_scans(300, max(1, a.pool // 4), a.types) if a.n_300dpi else []
    gallery = str(ensure_gallery(a.types))
    print(f"setup {time.time() - t0:.0f} s; cache {CACHE}", file=sys.stderr)
    out = str(CACHE / "bench-results.parquet")
    rows: list[tuple[str, int, dict]] = []

    def run(name: str, argv: list[str], n: int) -> dict:
        print(f"measuring {name} on {n} inputs ...", file=sys.stderr, flush=True)
        rep = measure(argv)
        print(f"  {json.dumps(rep)}", file=sys.stderr, flush=True)
        rows.append((name, n, rep))
        return rep

    small = write_list(scans200, a.naive_n, f"list-200dpi-{a.naive_n}")
    big = write_list(scans200, a.n, f"list-200dpi-{a.n}")
    pipe_small = run("pipeline (local, 2 threads), 200 dpi", ["--child", "local", "--list", str(small),
                                                              "--gallery", gallery, "--out", out], a.naive_n)
    naive = run("naive loop (reference style), 200 dpi", ["--child", "naive", "--list", str(small),
                                                          "--gallery", gallery], a.naive_n)
    verifying = run("pipeline (local, 2 threads), 200 dpi, verifying gallery", [
        "--child", "local", "--list", str(small), "--gallery", str(ensure_gallery(a.types, verify=True)),
        "--out", out], a.naive_n) if a.verify else None
    local_argv = ["--child", "local", "--list", str(big), "--gallery", gallery, "--out", out]
    pipe_runs = [run("pipeline (local, 2 threads), 200 dpi", local_argv, a.n)]
    if a.n_300dpi:
        l300 = write_list(scans300, a.n_300dpi, f"list-300dpi-{a.n_300dpi}")
        run("pipeline (local, 2 threads), 300 dpi", ["--child", "local", "--list", str(l300), "--gallery", gallery,
                                                     "--out", out], a.n_300dpi)
        naive300 = write_list(scans300, max(50, a.naive_n // 4), f"list-300dpi-naive-{max(50, a.naive_n // 4)}")
        run("naive loop (reference style), 300 dpi", ["--child", "naive", "--list", str(naive300), "--gallery",
                                                      gallery], max(50, a.naive_n // 4))
    ray_runs: list[dict] = []
    have_ray = False
    if not a.no_ray:
        try:
            import ray  # noqa: F401
            have_ray = True
        except ImportError:
            print("Ray not installed: skipping the Ray engine", file=sys.stderr)
    ray_n = a.ray_n or a.n
    lray = big if ray_n == a.n else write_list(scans200, ray_n, f"list-200dpi-{ray_n}")
    ray_argv = ["--child", "ray", "--list", str(lray), "--gallery", gallery, "--out", out]
    for r in range(max(1, a.rounds)):
        if r:
            pipe_runs.append(run("pipeline (local, 2 threads), 200 dpi", local_argv, a.n))
        if have_ray:
            ray_runs.append(run("Ray engine (local Ray, 2 actors x 0.5 CPU), 200 dpi", ray_argv, ray_n))

    def median(reps: list[dict], key: str) -> float:
        return float(np.median([r[key] for r in reps]))

    pipe_big = {"scans_per_s": median(pipe_runs, "scans_per_s"), "cpu_ms_per_scan": median(pipe_runs, "cpu_ms_per_scan"),
                "tree_peak_mb": max(r["tree_peak_mb"] for r in pipe_runs)}

    print()
    kb200 = np.mean([os.path.getsize(p) for p in scans200]) / 1024
    kb300 = f", 300 dpi (2480x3508) {np.mean([os.path.getsize(p) for p in scans300]) / 1024:.0f} KB" if scans300 else ""
    print(f"Machine: {os.cpu_count()} cores; load average (1 min) around each run shown (other work on the box "
          f"shows there). Model: {os.environ.get('DOCRETRIEVER_MODEL') or 'the shipped default'} ({_model_facts()}), "
          "1 ORT thread per call; gallery "
          f"{a.types} types (FAISS flat IP). Scans: JPEG q85-90, mean size 200 dpi (1700x2200) {kb200:.0f} KB"
          f"{kb300}; {len(scans200)} distinct scans cycled through the input list.")
    print()
    print("| variant | inputs | scans/s (wall) | wall (s) | CPU ms/scan (measured part) | CPU ms/scan (whole tree, "
          "incl. start-up) | peak RSS main (MB) | peak RSS tree (MB) | load before/after | sched. groups |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for name, n, r in rows:
        extra = f" (+{r['ray_start_s']:.1f} s Ray start)" if r.get("ray_start_s") else ""
        cpu = f"{r['cpu_ms_per_scan']:.1f}" if r.get("cpu_ms_per_scan") else "-"
        print(f"| {name} | {n} | {r['scans_per_s']:.1f} | {r['wall_s']:.1f}{extra} | {cpu} | "
              f"{r['tree_cpu_ms_per_scan']:.1f} | {r['vmhwm_mb']:.0f} | {r['tree_peak_mb']:.0f} | "
              f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} | {r['autogroups']} |")
    print()
    print("CPU ms/scan: user+system CPU per scan, independent of the machine's load; the whole-tree figure "
          "includes interpreter/model/Ray start-up and Ray's own processes. 2000 / (CPU ms/scan) bounds the "
          "throughput on 2 idle cores. Wall-clock scans/s on a shared machine reflect the CPU share a run got: "
          "with autogroup scheduling (kernel.sched_autogroup_enabled=1) the CPU is split between sessions, and every "
          "variant's processes share one session ('sched. groups'), whatever its number of threads or processes.")
    print()
    ratio = pipe_small["scans_per_s"] / naive["scans_per_s"]
    print(f"- pipeline / naive on the same {a.naive_n} scans: {ratio:.1f}x (bar: >= 5x)")
    print(f"- pipeline / naive CPU per scan: {naive['cpu_ms_per_scan'] / pipe_small['cpu_ms_per_scan']:.1f}x less; "
          f"on 2 idle cores (pipeline 2 threads, naive 1): "
          f"{2 * naive['cpu_ms_per_scan'] / pipe_small['cpu_ms_per_scan']:.1f}x (estimate)")
    if verifying:
        print(f"- verifying gallery / plain, same {a.naive_n} scans: {verifying['scans_per_s']:.1f} against "
              f"{pipe_small['scans_per_s']:.1f} scans/s ({verifying['scans_per_s'] / pipe_small['scans_per_s']:.2f}x); "
              f"CPU per scan {verifying['cpu_ms_per_scan']:.1f} against {pipe_small['cpu_ms_per_scan']:.1f} ms "
              f"({verifying['cpu_ms_per_scan'] / pipe_small['cpu_ms_per_scan']:.2f}x)")
    rounds = f" (median of {len(pipe_runs)} runs)" if len(pipe_runs) > 1 else ""
    print(f"- pipeline throughput, {a.n} scans at 200 dpi{rounds}: {pipe_big['scans_per_s']:.1f} scans/s (bar: >= 100 "
          f"on 2 cores); CPU-bound estimate on 2 idle cores: {2000 / pipe_big['cpu_ms_per_scan']:.0f} scans/s")
    print(f"- pipeline peak RSS, {a.n} inputs: {pipe_big['tree_peak_mb']:.0f} MB (bar: < 1536 MB)")
    if ray_runs:
        ray_rate = median(ray_runs, "scans_per_s")
        pipe_tree = median(pipe_runs, "tree_cpu_ms_per_scan")
        ray_tree = median(ray_runs, "tree_cpu_ms_per_scan")
        print(f"- Ray / pipeline wall-clock throughput{rounds}: {ray_rate / pipe_big['scans_per_s']:.0%} excluding the "
              f"{median(ray_runs, 'ray_start_s'):.1f} s Ray start (bar: >= 70 %); by CPU per scan (whole tree, incl. "
              f"start-up): {pipe_tree / ray_tree:.0%}")


if __name__ == "__main__":
    main()
