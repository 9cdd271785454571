#!/usr/bin/env python
"""Attack run: feed every command a seeded corpus of broken, hostile and special inputs and count what goes wrong.

    python scripts/attack.py [--seed 1] [--files 400] [--model M.onnx] [--keep DIR]

The corpus (``make_corpus``): valid scans in every supported format (some exact copies of the
register's exemplars, whose labels must come back right), then byte flips in headers and bodies,
truncations, random bytes, images whose header declares 20000x20000 or more, wrong extensions, text
files, multi-page TIFFs (some damaged), plus special entries: a file name that is not UTF-8, a name with
a newline, an empty file, broken and looping symbolic links, a directory link back to the parent, a
FIFO and a link to /dev/zero.

Each command runs in a subprocess with a timeout: ``retriever classify DIR --json``, ``retriever run DIR``
(then resumed), ``retriever embed DIR``, ``indexer add GALLERY DIR``.  Counted per command: crashes (a traceback, or an exit status
other than the documented ones), hangs (timeout), lost inputs (an input with no result and no error row),
wrong results (a copy of an exemplar not given its label), writes outside the target (any change to the
corpus, the gallery changed by a refused add, files left beside the output), and peak memory.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300.0
EXTS = (".jpg", ".png", ".bmp", ".webp", ".tif")


def _scan(rng: np.random.Generator, h: int | None = None, w: int | None = None) -> np.ndarray:
    h = h or int(rng.integers(40, 240))
    w = w or int(rng.integers(40, 240))
    img = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
    for _ in range(5):
        c = tuple(int(x) for x in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, max(1, w - 10))), int(rng.integers(0, max(1, h - 10)))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 40)), y + int(rng.integers(5, 40))), c, -1)
    return img


def _encode(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise RuntimeError(f"cannot encode {ext}")
    return buf.tobytes()


def _png_bomb(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h; its data stream is tiny (decoding it would allocate w*h*3)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _bmp_bomb(w: int, h: int) -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 54, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return header + info + b"\x00" * 64


def _tiff(pages: list[np.ndarray]) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.tif")
        if not cv2.imwritemulti(p, pages):
            raise RuntimeError("cannot write a multi-page TIFF")
        return Path(p).read_bytes()


@dataclass
class Corpus:
    root: Path
    kinds: dict[str, str] = field(default_factory=dict)      # file name -> kind of input
    exemplar_copies: dict[str, str] = field(default_factory=dict)  # file name -> the label it must get
    special: list[str] = field(default_factory=list)         # names of special entries


def make_corpus(root: Path, seed: int, n_files: int, register: dict[str, Path] | None = None) -> Corpus:
    """``n_files`` generated files plus the special entries, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    c = Corpus(root)
    for label, path in sorted((register or {}).items()):
        name = f"copy-{label}{path.suffix.lower()}"
        shutil.copyfile(path, root / name)
        c.kinds[name] = "valid (exemplar copy)"
        c.exemplar_copies[name] = label
    kinds = ["valid", "valid", "header-flip", "body-flip", "truncated", "random", "bomb", "wrong-ext", "text",
             "tiff-multi", "tiff-damaged"]
    for i in range(n_files):
        kind = kinds[int(rng.integers(len(kinds)))]
        ext = EXTS[int(rng.integers(len(EXTS)))]
        img = _scan(rng)
        data = _encode(img, ext)
        if kind == "header-flip":
            b = bytearray(data)
            for _ in range(int(rng.integers(1, 4))):
                j = int(rng.integers(0, min(64, len(b))))
                b[j] ^= 1 << int(rng.integers(8))
            data = bytes(b)
        elif kind == "body-flip":
            b = bytearray(data)
            for _ in range(int(rng.integers(1, 30))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(256))
            data = bytes(b)
        elif kind == "truncated":
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == "random":
            data = rng.integers(0, 256, int(rng.integers(1, 4000)), dtype=np.uint8).tobytes()
        elif kind == "bomb":
            side = int(rng.choice([20000, 60000, 100000]))
            data, ext = (_png_bomb(side, side), ".png") if rng.random() < 0.5 else (_bmp_bomb(side, side), ".bmp")
        elif kind == "wrong-ext":
            data = _encode(img, ".png")
            ext = ".jpg"
        elif kind == "text":
            data = b"this is not an image\n" * int(rng.integers(1, 50))
        elif kind.startswith("tiff"):
            data = _tiff([_scan(rng, 60, 50) for _ in range(int(rng.integers(2, 6)))])
            ext = ".tif"
            if kind == "tiff-damaged":
                b = bytearray(data)
                cut = int(rng.integers(len(b) // 3, len(b)))
                data = bytes(b[:cut]) if rng.random() < 0.5 else bytes(
                    x ^ 0xFF if j % 97 == 0 and j > 16 else x for j, x in enumerate(b))
        name = f"{i:04d}-{kind}{ext}"
        (root / name).write_bytes(data)
        c.kinds[name] = kind
    # special entries
    good = _encode(_scan(rng), ".jpg")
    special: list[tuple[str, Any]] = []
    try:
        nonutf8 = os.fsdecode(b"bad-\xff\xfe-name.jpg")
        (root / nonutf8).write_bytes(good)
        special.append((nonutf8, "non-UTF-8 name"))
    except OSError:  # a file system that refuses such names
        pass
    (root / "new\nline.jpg").write_bytes(good)
    special.append(("new\nline.jpg", "newline in name"))
    (root / "empty.png").write_bytes(b"")
    special.append(("empty.png", "empty file"))
    os.symlink(root / "does-not-exist.jpg", root / "broken.jpg")
    special.append(("broken.jpg", "broken link"))
    os.symlink("loop.jpg", root / "loop.jpg")
    special.append(("loop.jpg", "looping link"))
    os.makedirs(root / "sub", exist_ok=True)
    os.symlink("..", root / "sub" / "up")
    special.append(("sub/up", "directory link to the parent"))
    os.mkfifo(root / "fifo.jpg")
    special.append(("fifo.jpg", "FIFO"))
    os.symlink("/dev/zero", root / "zero.jpg")
    special.append(("zero.jpg", "link to /dev/zero"))
    for name, kind in special:
        c.kinds[name] = kind
        c.special.append(name)
    return c


def snapshot(root: Path) -> dict[str, str]:
    """What every entry below ``root`` is (file hash, link target, type), without following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "link:" + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as fh:
                    out[rel] = hashlib.sha256(fh.read()).hexdigest()
            else:
                out[rel] = f"mode:{st.st_mode:o}"
    return out


# Each command runs through this launcher, which records the command's own peak RSS at exit: VmHWM of its
# own address space (getrusage's maxrss survives exec on Linux, so a child of a big process, such as a
# test runner that loaded torch, would report its parent's peak).
_LAUNCH = ("import atexit, os, resource, runpy, sys\n"
           "def _peak():\n"
           "    try:\n"
           "        for line in open('/proc/self/status'):\n"
           "            if line.startswith('VmHWM:'):\n"
           "                return int(line.split()[1])\n"
           "    except OSError:\n"
           "        pass\n"
           "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
           "f = os.environ['ATTACK_RSS_FILE']\n"
           "atexit.register(lambda: open(f, 'w').write(str(_peak())))\n"
           "mod = sys.argv[1]\n"
           "sys.argv = [mod] + sys.argv[2:]\n"
           "runpy.run_module(mod, run_name='__main__', alter_sys=True)\n")


def _run(cmd: list[str], timeout: float, env: dict[str, str]) -> tuple[int | None, str, str, float, int]:
    """(exit status or None on timeout, stdout, stderr, seconds, peak RSS KB of the command itself)."""
    t0 = time.perf_counter()
    with tempfile.NamedTemporaryFile(prefix="attack-rss-", delete=False) as fh:
        rss_file = fh.name
    env = dict(env, ATTACK_RSS_FILE=rss_file)
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)
        rc, out, err = p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as exc:
        rc, out, err = None, (exc.stdout or b"").decode("utf-8", "replace"), (exc.stderr or b"").decode("utf-8", "replace")
    try:
        peak = int(Path(rss_file).read_text() or 0)
    except (OSError, ValueError):
        peak = 0
    os.unlink(rss_file)
    return rc, out, err, time.perf_counter() - t0, peak


def _bin(name: str) -> list[str]:
    return [sys.executable, "-c", _LAUNCH, name]


@dataclass
class Outcome:
    command: str
    cases: int
    crashes: list[str] = field(default_factory=list)
    hangs: int = 0
    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_mb: float = 0.0

    def row(self) -> str:
        return (f"| {self.command} | {self.cases} | {len(self.crashes)} | {self.hangs} | {len(self.lost)} | "
                f"{len(self.wrong)} | {len(self.outside)} | {self.seconds:.1f} | {self.peak_mb:.0f} |")


def _crashed(rc: int | None, err: str, allowed: tuple[int, ...]) -> str | None:
    if rc is None:
        return None
    if "Traceback (most recent call last)" in err:
        return err.strip().splitlines()[-1][:200]
    if rc not in allowed:
        return f"exit status {rc}: {err.strip()[-200:]}"
    return None


def expected_inputs(c: Corpus) -> set[str]:
    """The inputs a walk of the corpus must report: every non-directory entry, links included (not followed)."""
    return {n for n in c.kinds if n != "sub/up"}


def attack(work: Path, seed: int, n_files: int, model: str | None, gallery_register: Path | None = None,
           timeout: float = TIMEOUT_S) -> list[Outcome]:
    """Build a gallery, make the corpus, run every command on it; one Outcome per command."""
    env = dict(os.environ, OMP_NUM_THREADS="1", DOCRETRIEVER_SELF_CALIBRATE="0", PYTHONPATH=str(REPO))
    model_args = ["--model", model] if model else []
    reg = gallery_register or (REPO / "register_data" / "register")
    exemplars = {p.parent.name: p for p in sorted(reg.glob("*/*")) if p.is_file()}
    gallery = work / "gallery"
    rc, _, err, _, _ = _run(_bin("indexer") + ["build", str(reg), "-o", str(gallery)] + model_args, timeout, env)
    if rc != 0:
        raise RuntimeError(f"cannot build the gallery: {err}")
    c = make_corpus(work / "corpus", seed, n_files, exemplars)
    before = snapshot(c.root)
    gal_before = snapshot(gallery)
    want = expected_inputs(c)
    outcomes = []

    # retriever classify --json: one JSON line per input (result or error)
    o = Outcome("retriever classify DIR --json", len(want))
    rc, out, err, o.seconds, peak = _run(_bin("retriever") + ["classify", str(c.root), "-g", str(gallery), "--json",
                                                              "--threshold", "0.3"] + model_args, timeout, env)
    o.peak_mb = peak / 1024
    o.hangs = int(rc is None)
    if (crash := _crashed(rc, err, (0, 3))):
        o.crashes.append(crash)
    seen: dict[str, int] = {}
    for line in out.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            o.crashes.append(f"not a JSON line: {line[:80]!r}")
            continue
        rel = os.path.relpath(rec.get("path", ""), c.root)
        seen[rel] = seen.get(rel, 0) + 1
        if rel in c.exemplar_copies and (rec.get("label") != c.exemplar_copies[rel] or not rec.get("accepted")):
            o.wrong.append(f"{rel}: {rec.get('label')} accepted={rec.get('accepted')}")
    o.lost = sorted(repr(n) for n in want if n not in _decoded(seen))
    outcomes.append(o)

    # retriever run: one row (or one per page) per input, then a resume that finds it complete
    o = Outcome("retriever run DIR -o OUT.parquet", len(want))
    out_dir = work / "out"
    out_dir.mkdir()
    res = out_dir / "res.parquet"
    rc, out, err, o.seconds, peak = _run(_bin("retriever") + ["run", str(c.root), "-g", str(gallery), "-o", str(res),
                                                              "--threshold", "0.3", "-q"] + model_args, timeout, env)
    o.peak_mb = peak / 1024
    o.hangs = int(rc is None)
    if (crash := _crashed(rc, err, (0, 3))):
        o.crashes.append(crash)
    rc2, _, err2, _, _ = _run(_bin("retriever") + ["run", str(c.root), "-g", str(gallery), "-o", str(res), "--threshold",
                                                   "0.3", "-q"] + model_args, timeout, env)
    if (crash := _crashed(rc2, err2, (0, 3))):
        o.crashes.append("resume: " + crash)
    if res.is_file():
        import pyarrow.parquet as pq

        t = pq.read_table(res)
        paths = t.column("path").to_pylist()
        labels = t.column("label").to_pylist()
        acc = t.column("accepted").to_pylist()
        rows: dict[str, int] = {}
        for p, lab, a in zip(paths, labels, acc):
            rel = os.path.relpath(p, c.root)
            rows[rel] = rows.get(rel, 0) + 1
            if rel in c.exemplar_copies and (lab != c.exemplar_copies[rel] or not a):
                o.wrong.append(f"{rel}: {lab} accepted={a}")
        rows = _decoded(rows)
        o.lost = sorted(repr(n) for n in want if n not in rows)
        # a TIFF may have more rows than one (pages, and error rows for pages it declares but cannot give)
        o.lost += sorted(f"{n!r}: {k} rows" for n, k in rows.items() if k != 1 and not n.lower().endswith(".tif"))
        extra = sorted(set(os.listdir(out_dir)) - {"res.parquet"})
        o.outside += [f"left beside the output: {x}" for x in extra]
    else:
        o.lost = sorted(repr(n) for n in want)
    outcomes.append(o)

    # retriever embed: one row (or one per page) per input; error rows carry no vector, the others unit vectors
    o = Outcome("retriever embed DIR -o OUT.parquet", len(want))
    vec = out_dir / "vectors.parquet"
    rc, out, err, o.seconds, peak = _run(_bin("retriever") + ["embed", str(c.root), "-o", str(vec), "-q"] + model_args,
                                         timeout, env)
    o.peak_mb = peak / 1024
    o.hangs = int(rc is None)
    if (crash := _crashed(rc, err, (0, 3))):
        o.crashes.append(crash)
    if vec.is_file():
        import numpy as np
        import pyarrow.parquet as pq

        rows_e: dict[str, int] = {}
        for r in pq.read_table(vec).to_pylist():
            rel = os.path.relpath(r["path"], c.root)
            rows_e[rel] = rows_e.get(rel, 0) + 1
            if (r["error"] is None) == (r["vector"] is None):
                o.wrong.append(f"{rel}: error {r['error']!r} with vector {'present' if r['vector'] else 'missing'}")
            elif r["vector"] is not None and not abs(float(np.linalg.norm(r["vector"])) - 1.0) < 1e-3:
                o.wrong.append(f"{rel}: vector not unit length")
        o.lost = sorted(repr(n) for n in want if n not in _decoded(rows_e))
    else:
        o.lost = sorted(repr(n) for n in want)
    outcomes.append(o)

    # indexer add: all or nothing, the refused batch lists the bad files, the gallery is untouched
    o = Outcome("indexer add GALLERY DIR --label x", len(want))
    rc, out, err, o.seconds, peak = _run(_bin("indexer") + ["add", str(gallery), str(c.root), "--label", "fuzzed"]
                                         + model_args, timeout, env)
    o.peak_mb = peak / 1024
    o.hangs = int(rc is None)
    if (crash := _crashed(rc, err, (0, 1))):
        o.crashes.append(crash)
    if rc == 1 and snapshot(gallery) != gal_before:
        o.outside.append("a refused add changed the gallery")
    outcomes.append(o)

    after = snapshot(c.root)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        for oc in outcomes:
            oc.outside.append(f"corpus changed: {changed[:5]}")
    return outcomes


def _decoded(counts: dict[str, int]) -> dict[str, int]:
    """Paths as a tool printed them -> corpus names (non-UTF-8 bytes may be shown escaped)."""
    out: dict[str, int] = {}
    for k, v in counts.items():
        key = k
        if "\\x" in k:
            try:
                key = os.fsdecode(k.encode("utf-8").decode("unicode_escape").encode("latin-1"))
            except (UnicodeError, ValueError):
                key = k
        out[key] = out.get(key, 0) + v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--model", default=None, help="ONNX model (default: the shipped one)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per command before it counts as a hang")
    ap.add_argument("--keep", type=Path, help="work here and keep the corpus (default: a temporary directory)")
    a = ap.parse_args(argv)
    work = a.keep or Path(tempfile.mkdtemp(prefix="attack-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        outcomes = attack(work, a.seed, a.files, a.model, timeout=a.timeout)
        print(f"# Attack run: seed {a.seed}, {a.files} generated files + special entries ({time.perf_counter() - t0:.0f} s)\n")
        print("| command | inputs | crashes | hangs | lost inputs | wrong results | writes outside target | s | peak MB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for o in outcomes:
            print(o.row())
        for o in outcomes:
            for what in ("crashes", "lost", "wrong", "outside"):
                for x in getattr(o, what)[:10]:
                    print(f"- {o.command}: {what}: {x}")
        bad = sum(len(o.crashes) + o.hangs + len(o.lost) + len(o.wrong) + len(o.outside) for o in outcomes)
        return 1 if bad else 0
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
