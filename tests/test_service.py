"""`retriever serve`: the HTTP contract, writes behind a token, hot reload, bad input and overload."""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from bulk_helpers import LABELS, build_gallery, scan  # noqa: E402
from indexer import Gallery  # noqa: E402
from retriever import Retriever  # noqa: E402
from retriever.service import Admission, ServiceConfig, create_app  # noqa: E402

TOKEN = "s3cret-token-0123456789"
THRESHOLD = 0.5



@pytest.fixture
def gallery(tiny, tmp_path) -> Gallery:
    return build_gallery(tiny, tmp_path)


def _client(gallery: Gallery, tiny, **kw) -> TestClient:
    kw.setdefault("threshold", THRESHOLD)
    kw.setdefault("top_k", 3)
    kw.setdefault("poll_s", 0.1)
    return TestClient(create_app(ServiceConfig(gallery.path, tiny, **kw)))


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def _reg_image(gallery: Gallery, label: str) -> bytes:
    src = gallery.items.filter(np.asarray(gallery.items.column("label").to_pylist()) == label)
    return Path(src.column("source")[0].as_py()).read_bytes()


def test_healthz_labels_thresholds_docs(gallery, tiny):
    with _client(gallery, tiny) as c:
        h = c.get("/healthz").json()
        assert h["model"]["fingerprint"] == tiny.fingerprint and h["gallery"]["generation"] == gallery.generation
        assert h["gallery"]["labels"] == 3 and "explicit threshold" in h["operating_point"]
        assert c.get("/v1/labels").json()["labels"] == {lab: 1 for lab in LABELS}
        assert c.get("/v1/thresholds").json()["operating_point"]["kind"] == "threshold"
        assert c.get("/docs").status_code == 200 and "/v1/classify" in c.get("/openapi.json").json()["paths"]


def test_classify_matches_the_retriever_and_reports_bad_files_in_place(gallery, tiny):
    good = _reg_image(gallery, "passport")
    files = [("file", ("a.png", good, "image/png")), ("file", ("bad.jpg", b"not an image", "image/jpeg")),
             ("file", ("c.png", _png(scan(77)), "image/png"))]
    with _client(gallery, tiny) as c:
        r = c.post("/v1/classify", files=files)
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["file"] for x in res] == ["a.png", "bad.jpg", "c.png"]
    assert res[1]["error"] and "label" not in res[1]
    ref = Retriever(gallery, tiny, threshold=THRESHOLD, top_k=3).classify([good, _png(scan(77))])
    for got, want in zip([res[0], res[2]], ref):
        assert got["error"] is None and got["label"] == want.label and got["accepted"] == want.accepted
        assert got["score"] == pytest.approx(want.score, abs=1e-5) and got["rule"] == want.rule
        assert [t["label"] for t in got["top_k"]] == [lab for lab, _ in want.top_k]
    top = res[0]["top_k"][0]
    assert top["label"] == "passport" and top["id"] in gallery.items.column("id").to_pylist()
    assert top["source"].endswith("front.png") and res[0]["operating_point"] == "threshold"


def test_multi_page_tiff_gives_one_result_per_page(gallery, tiny, tmp_path):
    p = tmp_path / "m.tif"
    assert cv2.imwritemulti(str(p), [scan(1), scan(2), scan(3)])
    with _client(gallery, tiny) as c:
        res = c.post("/v1/classify", files=[("file", ("m.tif", p.read_bytes(), "image/tiff"))]).json()["results"]
    assert [(x["file"], x["page"]) for x in res] == [("m.tif", 0), ("m.tif", 1), ("m.tif", 2)]
    assert all(x["error"] is None and x["label"] in LABELS for x in res)


def test_embed_returns_the_encoders_vectors(gallery, tiny):
    img = scan(5)
    with _client(gallery, tiny) as c:
        body = c.post("/v1/embed", files=[("file", ("x.png", _png(img), "image/png"))]).json()
    assert body["model"]["fingerprint"] == tiny.fingerprint and body["model"]["dim"] == tiny.dim
    v = np.asarray(body["results"][0]["vector"], np.float32)
    np.testing.assert_allclose(v, tiny.encode([_png(img)])[0], atol=1e-5)


def test_writes_need_the_token_and_go_through_the_gallery(gallery, tiny):
    files = [("file", ("new.png", _png(scan(4242)), "image/png"))]
    with _client(gallery, tiny) as c:  # no token file: writes disabled
        assert c.post("/v1/items", files=files, data={"label": "visa"}).status_code == 403
    with _client(gallery, tiny, token=TOKEN) as c:
        assert c.post("/v1/items", files=files, data={"label": "visa"}).status_code == 401
        bad = {"Authorization": "Bearer wrong-token-xxxxxxxx"}
        assert c.post("/v1/items", files=files, data={"label": "visa"}, headers=bad).status_code == 403
        ok = {"Authorization": f"Bearer {TOKEN}"}
        r = c.post("/v1/items", files=files, data={"label": "visa"}, headers=ok)
        assert r.status_code == 200 and len(r.json()["added_ids"]) == 1
        assert c.get("/v1/labels").json()["labels"]["visa"] == 1  # served at once
        assert Gallery.open(gallery.path).label_counts()["visa"] == 1
        r = c.delete("/v1/items", params={"label": "visa"}, headers=ok)
        assert r.status_code == 200 and r.json()["removed_ids"]
        assert c.delete("/v1/items", params={"label": "nope"}, headers=ok).status_code == 404
        assert "visa" not in c.get("/v1/labels").json()["labels"]


def test_hot_reload_serves_another_process_change_without_failed_requests(gallery, tiny, tmp_path):
    body = [("file", ("q.png", _png(scan(9)), "image/png"))]
    with _client(gallery, tiny) as c:
        gen0 = c.get("/healthz").json()["gallery"]["generation"]
        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                statuses.append(c.post("/v1/classify", files=body).status_code)

        t = threading.Thread(target=hammer)
        t.start()
        reg = tmp_path / "more" / "visa"
        reg.mkdir(parents=True)
        cv2.imwrite(str(reg / "v.png"), scan(31337))
        Gallery.open(gallery.path, encoder=tiny).add([reg.parent])  # "another process": the indexer API
        t0 = time.monotonic()
        while c.get("/healthz").json()["gallery"]["generation"] == gen0 and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        took = time.monotonic() - t0
        time.sleep(0.2)
        stop.set()
        t.join()
        assert took < 2.0 and "visa" in c.get("/v1/labels").json()["labels"]
        assert statuses and set(statuses) == {200}


def test_too_large_bodies_and_pixel_bombs_are_refused_cleanly(gallery, tiny):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    with _client(gallery, tiny, max_upload_mb=0.05) as c:
        big = [("file", ("big.png", b"\x00" * 200_000, "image/png"))]
        r = c.post("/v1/classify", files=big)
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        r = c.post("/v1/classify", files=[("file", ("bomb.png", bomb, "image/png")),
                                          ("file", ("ok.png", _png(scan(3)), "image/png"))])
        assert r.status_code == 200
        res = r.json()["results"]
        assert res[0]["error"] and res[1]["error"] is None
        assert c.post("/v1/classify").status_code == 422  # no files: a 4xx naming the problem


def test_admission_refuses_beyond_workers_plus_queue():
    a = Admission(workers=1, queue=1)
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with a.slot() as ok:
            assert ok
            inside.set()
            release.wait(5)

    t1 = threading.Thread(target=hold)
    t1.start()
    inside.wait(5)
    waiter_ok: list[bool] = []
    t2 = threading.Thread(target=lambda: waiter_ok.append(a.slot().__enter__()))
    t2.start()
    time.sleep(0.1)  # t2 is queued behind t1
    with a.slot() as ok:
        assert ok is False  # full: 1 working + 1 waiting
    release.set()
    t1.join()
    t2.join()
    assert waiter_ok == [True]


def test_metrics_count_requests_and_show_the_generation(gallery, tiny):
    with _client(gallery, tiny) as c:
        c.get("/healthz")
        c.post("/v1/classify", files=[("file", ("x.png", _png(scan(1)), "image/png"))])
        text = c.get("/metrics").text
    assert 'docretriever_requests_total{endpoint="/v1/classify",status="200"} 1.0' in text
    assert f"docretriever_gallery_generation {float(gallery.generation)}" in text
    assert "docretriever_images_total" in text


@contextmanager
def _real_server(cfg: ServiceConfig) -> Iterator[str]:
    """uvicorn in a thread on a free port; yields the base URL."""
    import socket

    import httpx
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        t.join(10)


def test_real_server_hot_reload_from_another_process_and_bombs(gallery, tiny, tiny_model_path, tmp_path):
    """Over real HTTP: `indexer add` in another process while a client keeps classifying; the change is
    served within 2 s and no request fails.  A decompression bomb is a per-file error, not a 500."""
    import subprocess
    import sys

    import httpx

    cfg = ServiceConfig(gallery.path, tiny, threshold=THRESHOLD, top_k=3, poll_s=0.2)
    body = [("file", ("q.png", _png(scan(9)), "image/png"))]
    with _real_server(cfg) as base:
        gen0 = httpx.get(f"{base}/healthz").json()["gallery"]["generation"]
        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    try:
                        statuses.append(c.post(f"{base}/v1/classify", files=body).status_code)
                    except httpx.HTTPError:
                        statuses.append(-1)

        t = threading.Thread(target=hammer)
        t.start()
        reg = tmp_path / "more" / "visa"
        reg.mkdir(parents=True)
        cv2.imwrite(str(reg / "v.png"), scan(31337))
        proc = subprocess.run([sys.executable, "-m", "indexer.cli", "add", str(gallery.path), str(reg.parent),
                               "--model", str(tiny_model_path)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        t0 = time.monotonic()
        while httpx.get(f"{base}/healthz").json()["gallery"]["generation"] == gen0 and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        took = time.monotonic() - t0
        time.sleep(0.3)
        stop.set()
        t.join()
        assert took < 2.0 and "visa" in httpx.get(f"{base}/v1/labels").json()["labels"]
        assert len(statuses) > 3 and set(statuses) == {200}
        bomb = _png_bomb()
        r = httpx.post(f"{base}/v1/classify", files=[("file", ("bomb.png", bomb, "image/png"))], timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["error"]


def _png_bomb() -> bytes:
    """A PNG whose header declares 60000 x 60000 pixels (3.6 gigapixels) in a few dozen bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_the_real_server_on_a_free_port(gallery, tiny, tmp_path):
    """uvicorn in a thread on a free port, spoken to over HTTP: the same answers as the in-process app,
    413 for an oversized body, 401 for an unauthorised write."""
    import httpx

    cfg = ServiceConfig(gallery.path, tiny, threshold=THRESHOLD, top_k=3, token=TOKEN, max_upload_mb=0.05)
    with _real_server(cfg) as base:
        good = _reg_image(gallery, "receipt")
        r = httpx.post(f"{base}/v1/classify", files=[("file", ("r.png", good, "image/png"))], timeout=10)
        assert r.status_code == 200 and r.json()["results"][0]["label"] == "receipt"
        # the same answer as `retriever classify --json` with the same operating point, key for key
        (tmp_path / "r.png").write_bytes(good)
        from click.testing import CliRunner

        from retriever.cli import main as retriever_cli

        cli = CliRunner().invoke(retriever_cli, ["classify", str(tmp_path / "r.png"), "-g", str(gallery.path),
                                                 "--threshold", str(THRESHOLD), "--top-k", "3", "--json",
                                                 "--model", str(tiny.path)])
        assert cli.exit_code == 0, cli.output
        want = json.loads(next(line for line in cli.output.splitlines() if line.startswith("{")))
        got = r.json()["results"][0]
        for key in ("label", "score", "accepted", "threshold", "margin", "decision_score", "rule",
                    "operating_point", "top_k"):
            assert got[key] == want[key], key
        # a label filter travels as repeated form fields; an unknown label is a 422 naming it
        f = httpx.post(f"{base}/v1/classify", files=[("file", ("r.png", good, "image/png"))],
                       data={"labels": ["passport", "invoice"]}, timeout=10)
        assert f.status_code == 200 and {t["label"] for t in f.json()["results"][0]["top_k"]} == {"passport", "invoice"}
        bad = httpx.post(f"{base}/v1/classify", files=[("file", ("r.png", good, "image/png"))],
                         data={"labels": ["nope"]}, timeout=10)
        assert bad.status_code == 422 and "nope" in bad.text
        big = httpx.post(f"{base}/v1/classify", files=[("file", ("b.png", b"\0" * 200_000, "image/png"))], timeout=10)
        assert big.status_code == 413
        w = httpx.post(f"{base}/v1/items", files=[("file", ("n.png", _png(scan(5)), "image/png"))],
                       data={"label": "x"}, timeout=10)
        assert w.status_code == 401


def test_serve_refuses_a_short_token_file(tmp_path, gallery):
    from click.testing import CliRunner

    from retriever.cli import main

    tok = tmp_path / "token.txt"
    tok.write_text("short\n")
    res = CliRunner().invoke(main, ["serve", "-g", str(gallery.path), "--token-file", str(tok)])
    assert res.exit_code == 1 and "at least 16 characters" in res.output


def test_admission_counts_bodies_being_read():
    """Uploads are held in memory: a request whose body is still being read takes a place, so a full
    service answers 503 before reading more bodies (memory bounded by workers + queue bodies)."""
    from retriever.service import Admission

    a = Admission(workers=1, queue=1)
    assert not a.full
    a.reading += 1
    with a.slot() as ok:
        assert ok and a.full  # one reading + one at work = 2 places
    assert not a.full
    a.reading -= 1
