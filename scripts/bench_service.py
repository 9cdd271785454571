#!/usr/bin/env python
"""Benchmark `retriever serve`: the real server process under concurrent HTTP clients, against
`retriever run` on the same scans in the same run.

    python scripts/bench_service.py                    # 600 A4 200-dpi JPEG scans, 100-type gallery
    python scripts/bench_service.py --n 200 --overload-s 10   # quick look

What it measures, one after the other on the same machine:

1. ``retriever run`` (``run_bulk``, local engine, 2 threads, batches of 32) over ``--n`` scans, in a
   child process after an untimed warm-up: the bulk baseline in scans/s.
2. The server (``retriever serve`` with its defaults, as a subprocess) after a warm-up:
   * throughput: 16 clients (threads with their own ``httpx.Client``) posting one scan per request
     (a multipart body built once per scan, as ``curl -F`` would send it)
     until ``--n`` scans are classified; images/s and its ratio to (1);
   * latency of one-image requests with 1 client (``--latency-n`` sequential requests) and with 16
     clients (every request of the throughput phase): p50 / p99;
   * overload: 64 clients posting as fast as they can for ``--overload-s`` seconds; 200s, 503s
     (with Retry-After) and anything else counted, the server's peak RSS (VmHWM) read from /proc.
   Every 200 response is checked: one result per upload, no ``error``.
3. Prints a markdown report and writes it (``--out``, default scripts/results/bench_service.md)
   with the machine's load average before and after each phase.

The scans and gallery come from scripts/bench_bulk.py's generator (cached under
~/.cache/docretriever/bench-bulk/).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(HERE), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

from bench_bulk import ensure_gallery, ensure_scans, write_list  # noqa: E402

THRESHOLD = 0.3  # cosine: fixed, so both sides decide alike whatever tables the gallery has


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    st = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def _vmhwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def child_run(lst: str, gallery: str, out: str) -> None:
    """Child process: the bulk baseline (warm-up, then timed), summary as JSON on stdout."""
    import encoders
    from retriever.bulk import run_bulk

    enc = encoders.load()
    kw = dict(encoder=enc, threshold=THRESHOLD, workers=2, batch_size=32, overwrite=True, progress=False)
    warm = Path(lst).with_suffix(".warmup.txt")
    warm.write_text("\n".join(Path(lst).read_text().split()[:64]) + "\n")
    run_bulk(["@" + str(warm)], gallery, out + ".warmup.parquet", **kw)
    t, c = time.monotonic(), time.process_time()
    s = run_bulk(["@" + lst], gallery, out, **kw)
    wall, cpu = time.monotonic() - t, time.process_time() - c
    print(json.dumps({"rows": s["rows"], "errors": s["errors"], "wall_s": wall, "scans_per_s": s["rows"] / wall,
                      "cpu_ms_per_scan": 1000 * cpu / max(s["rows"], 1)}))


BOUNDARY = "docretriever-bench-boundary-7f0ad6"


def multipart(path: str, data: bytes) -> bytes:
    """The request body a browser or `curl -F file=@scan.jpg` sends, built once per scan so the
    clients (on the same cores as the server) do not rebuild and copy it for every request."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{Path(path).name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _post(client, url: str, path: str, body: bytes) -> tuple[int, float, str | None]:
    t = time.perf_counter()
    r = client.post(url, content=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                    timeout=120)
    dt = time.perf_counter() - t
    problem = None
    if r.status_code == 200:
        res = r.json()["results"]
        if len(res) != 1 or res[0].get("error"):
            problem = f"bad result: {res[:1]}"
    return r.status_code, dt, problem


def clients(base: str, paths: list[str], blobs: dict[str, bytes], n_clients: int, total: int | None = None,
            seconds: float | None = None) -> dict:
    """``n_clients`` threads posting one scan per request, until ``total`` requests or ``seconds``."""
    import httpx

    lock = threading.Lock()
    state = {"next": 0, "lat": [], "codes": {}, "problems": [], "retry_after": 0}
    stop_at = time.monotonic() + seconds if seconds else None
    url = f"{base}/v1/classify"

    def worker() -> None:
        with httpx.Client() as c:
            while True:
                with lock:
                    i = state["next"]
                    if (total is not None and i >= total) or (stop_at is not None and time.monotonic() >= stop_at):
                        return
                    state["next"] += 1
                path = paths[i % len(paths)]
                try:
                    code, dt, problem = _post(c, url, path, blobs[path])
                except Exception as exc:  # a refused or broken connection counts as a failure
                    code, dt, problem = -1, 0.0, f"{type(exc).__name__}: {exc}"
                with lock:
                    state["codes"][code] = state["codes"].get(code, 0) + 1
                    if code == 200:
                        state["lat"].append(dt)
                    if problem:
                        state["problems"].append(problem)

    t = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(n_clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t
    lat = np.asarray(state["lat"]) * 1000
    ok = state["codes"].get(200, 0)
    return {"clients": n_clients, "requests": sum(state["codes"].values()), "ok": ok, "codes": state["codes"],
            "problems": state["problems"][:5], "n_problems": len(state["problems"]), "wall_s": wall,
            "images_per_s": ok / wall if wall > 0 else None,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None}


def start_server(gallery: Path, port: int, workers: int | None = None, queue: int = 16) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "retriever.cli", "serve", "-g", str(gallery), "--port", str(port), "--threshold",
           str(THRESHOLD), "--queue", str(queue), "--log-level", "warning"] + \
        (["--workers", str(workers)] if workers else [])
    proc = subprocess.Popen(cmd, cwd=REPO)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
    proc.kill()
    raise RuntimeError("the server did not come up in 60 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=600, help="scans for the throughput comparison")
    ap.add_argument("--pool", type=int, default=300, help="distinct scans generated")
    ap.add_argument("--types", type=int, default=100, help="gallery size")
    ap.add_argument("--latency-n", type=int, default=150, help="sequential one-image requests at 1 client")
    ap.add_argument("--overload-s", type=float, default=20.0, help="seconds of 64-client overload")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_service.md")
    ap.add_argument("--child-run", nargs=3, metavar=("LIST", "GALLERY", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child_run:
        child_run(*a.child_run)
        return 0

    paths = ensure_scans(200, a.pool, a.types)
    gallery = ensure_gallery(a.types)
    lst = write_list(paths, a.n, f"service-{a.n}")
    blobs = {p: multipart(p, Path(p).read_bytes()) for p in set(paths)}
    mb = np.mean([len(b) for b in blobs.values()]) / 1e6
    report: dict = {"n": a.n, "scan_mb": round(float(mb), 2), "gallery_types": a.types, "loads": {}}

    report["loads"]["run"] = [_load()]
    out = subprocess.run([sys.executable, __file__, "--child-run", str(lst), str(gallery),
                          str(Path(lst).with_suffix(".parquet"))], capture_output=True, text=True, check=True)
    report["run"] = json.loads(out.stdout.strip().splitlines()[-1])
    report["loads"]["run"].append(_load())

    port = _free_port()
    server = start_server(gallery, port)
    base = f"http://127.0.0.1:{port}"
    try:
        clients(base, paths, blobs, 4, total=64)  # warm-up: first calls, connection set-up
        report["loads"]["throughput"] = [_load()]
        server_cpu, client_cpu = _cpu_s(server.pid), time.process_time()
        report["throughput"] = clients(base, paths, blobs, 16, total=a.n)
        ok = max(report["throughput"]["ok"], 1)
        report["throughput"]["server_cpu_ms_per_image"] = 1000 * (_cpu_s(server.pid) - server_cpu) / ok
        report["throughput"]["client_cpu_ms_per_image"] = 1000 * (time.process_time() - client_cpu) / ok
        report["loads"]["throughput"].append(_load())
        report["latency_1"] = clients(base, paths, blobs, 1, total=a.latency_n)
        report["loads"]["overload"] = [_load()]
        report["overload"] = clients(base, paths, blobs, 64, seconds=a.overload_s)
        report["loads"]["overload"].append(_load())
        report["server_vmhwm_mb"] = _vmhwm_mb(server.pid)
        report["server_alive_after_overload"] = server.poll() is None
    finally:
        server.terminate()
        server.wait(30)

    text = markdown(report)
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


def markdown(r: dict) -> str:
    run, tp, l1, ov = r["run"], r["throughput"], r["latency_1"], r["overload"]
    ratio = tp["images_per_s"] / run["scans_per_s"]
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(ov["codes"].items(), key=lambda kv: str(kv[0])))
    errors = tp["n_problems"] + l1["n_problems"] + sum(v for k, v in tp["codes"].items() if k != 200) + \
        sum(v for k, v in l1["codes"].items() if k != 200)
    lines = [
        f"# `retriever serve` under load ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
        f"{r['n']} A4 200-dpi JPEG scans (mean {r['scan_mb']} MB), a {r['gallery_types']}-type gallery, the shipped "
        f"model, threshold {THRESHOLD} (cosine); server defaults (`--workers` 2 per core, `--queue 16`); clients "
        f"(a thread each, httpx.Client) on the same {os.cpu_count()}-core machine.",
        "",
        "| measure | value |", "|---|---:|",
        f"| `retriever run` (2 threads, batch 32) | {run['scans_per_s']:.1f} scans/s |",
        f"| service, 16 clients, one image per request | {tp['images_per_s']:.1f} images/s |",
        f"| ratio service / run | {ratio:.2f} |",
        f"| CPU per image: `retriever run` / server / clients (16-client phase) | {run['cpu_ms_per_scan']:.1f} / "
        f"{tp['server_cpu_ms_per_image']:.1f} / {tp['client_cpu_ms_per_image']:.1f} ms |",
        f"| one-image latency, 1 client: p50 / p99 | {l1['p50_ms']:.0f} / {l1['p99_ms']:.0f} ms "
        f"(p99/p50 {l1['p99_ms'] / l1['p50_ms']:.2f}) |",
        f"| one-image latency, 16 clients: p50 / p99 | {tp['p50_ms']:.0f} / {tp['p99_ms']:.0f} ms |",
        f"| errors (non-200 or a result with an error), throughput + latency phases | {errors} |",
        f"| overload, 64 clients for {ov['wall_s']:.0f} s: responses | {codes} |",
        f"| server peak RSS (VmHWM) after overload | {r['server_vmhwm_mb']:.0f} MB |",
        f"| server still serving after overload | {r['server_alive_after_overload']} |",
        "",
        "Load average (1 min) before / after each phase: " + "; ".join(
            f"{k} {v[0]} / {v[1]}" for k, v in r["loads"].items()),
    ]
    if tp["problems"] or l1["problems"] or ov["problems"]:
        lines += ["", "First problems seen: " + "; ".join(tp["problems"] + l1["problems"] + ov["problems"][:3])]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
