"""`retriever serve`: one gallery as an HTTP service (FastAPI on uvicorn; the ``docretriever[serve]`` extra).

Why this shape: other systems need the classifier without Python: upload scans, get the same results
`retriever classify --json` gives.  One process serves one gallery with one operating point.

* **Hot reload**: a thread polls the gallery's manifest; when another process commits a new generation
  (`indexer add`, `indexer rollback`), a new :class:`retriever.Retriever` is opened and swapped in.
  Every request takes the retriever current when it starts, so requests in flight finish on their
  generation and no request fails during the swap.
* **Bad input is never a 500**: an unreadable upload is a per-file ``error`` in a 200 response; a body
  over ``max_upload_mb`` is 413; images over the pixel limit are refused from their header before
  decoding (encoders.decode); the service never opens a server-side path named by a client.
* **Overload**: at most ``workers`` requests encode at once and at most ``queue`` wait; beyond that,
  503 with ``Retry-After``: memory stays bounded.
* **Writes** (`POST /v1/items`, `DELETE /v1/items`) exist only with a token file, and need
  ``Authorization: Bearer <token>`` (constant-time comparison); they go through the gallery's lock and
  atomic generations like `indexer add/remove`.
* ``/metrics``: Prometheus text (requests, latencies, errors, images, gallery generation).
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
# FastAPI resolves the endpoints' annotations from this module's globals: imported here, so importing this
# module needs the ``docretriever[serve]`` extra (only `retriever serve` imports it)
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse

from .defaults import TOP_K
from .errors import RetrieverError

__all__ = ["GalleryHolder", "ServiceConfig", "create_app"]

LOG = logging.getLogger("retriever.service")
DEFAULT_MAX_UPLOAD_MB = 32
DEFAULT_POLL_S = 0.5
MAX_FILES_PER_REQUEST = 256
MAX_FORM_FIELDS = 64  # non-file parts of one request (label filters)


def default_workers() -> int:
    """Requests encoded at once: two per core.  Decoding and inference release the GIL but the HTTP
    and multipart work around them does not, so a second request per core keeps the cores busy
    (scripts/bench_service.py, 2 cores: 2 workers 61 images/s, 3: 75, 4: 82)."""
    return 2 * (os.cpu_count() or 1)


class ServiceConfig:
    """Everything a service process needs, decided once at start-up."""

    def __init__(self, gallery: str | os.PathLike, encoder: Any, fpir: float | None = None, fpr: float | None = None,
                 threshold: float | None = None, top_k: int = TOP_K, token: str | None = None,
                 max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, workers: int | None = None, queue: int = 16,
                 poll_s: float = DEFAULT_POLL_S, search_params: dict | None = None) -> None:
        self.gallery = Path(gallery)
        self.encoder = encoder
        self.operating_point = {"fpir": fpir, "fpr": fpr, "threshold": threshold}
        self.top_k = int(top_k)
        self.token = token
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.workers = max(1, int(workers if workers is not None else default_workers()))
        self.queue = max(0, int(queue))
        self.poll_s = float(poll_s)
        self.search_params = search_params


def read_token(path: str | os.PathLike) -> str:
    """The write token: the file's first line, at least 16 characters (refused otherwise)."""
    text = Path(path).read_text(encoding="utf-8").strip().splitlines()
    token = text[0].strip() if text else ""
    if len(token) < 16:
        raise ValueError(f"{path}: the token must be at least 16 characters on the first line")
    return token


class GalleryHolder:
    """The current retriever of a gallery, replaced when another process commits a new generation."""

    def __init__(self, cfg: ServiceConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self.retriever = self._open()
        self.reload_errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gallery-reload", daemon=True)
        self._thread.start()

    def _open(self) -> Any:
        from .retriever import Retriever

        return Retriever(str(self.cfg.gallery), encoder=self.cfg.encoder, top_k=self.cfg.top_k,
                         search_params=self.cfg.search_params, **self.cfg.operating_point)

    @property
    def generation(self) -> int:
        return int(self.retriever.gallery.generation)

    def current(self) -> Any:
        with self._lock:
            return self.retriever

    def _disk_generation(self) -> int | None:
        try:
            return int(json.loads((self.cfg.gallery / "manifest.json").read_text(encoding="utf-8"))["generation"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def reload_if_changed(self) -> bool:
        gen = self._disk_generation()
        if gen is None or gen == self.generation:
            return False
        try:
            fresh = self._open()
        except Exception as exc:  # a half-written or damaged gallery: keep serving the last good one
            self.reload_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            LOG.warning("gallery reload failed (still serving generation %s): %s", self.generation, exc)
            return False
        with self._lock:
            self.retriever = fresh
        self.last_error = None
        LOG.info("now serving gallery generation %s", fresh.gallery.generation)
        return True

    def _poll(self) -> None:
        while not self._stop.wait(self.cfg.poll_s):
            self.reload_if_changed()

    def stop(self) -> None:
        self._stop.set()


class _TooLarge(Exception):
    pass


class Metrics:
    """ASGI middleware: requests and latencies per endpoint and status; an unhandled error becomes a
    JSON 500 (never a traceback).  Plain ASGI rather than ``@app.middleware("http")``: Starlette's
    BaseHTTPMiddleware re-wraps every body chunk in a task, measurable on 0.5 MB uploads."""

    def __init__(self, app: Any, requests: Any, latency: Any) -> None:
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        endpoint = scope.get("path", "")
        status = 500
        started = False

        async def send_tracking(msg: dict) -> None:
            nonlocal status, started
            if msg.get("type") == "http.response.start":
                status, started = int(msg["status"]), True
            await send(msg)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:  # never a traceback to the client
            LOG.exception("unhandled error on %s", endpoint)
            if not started:
                await JSONResponse({"detail": "internal error; see the service log"}, status_code=500)(
                    scope, receive, send_tracking)
        finally:
            self.requests.labels(endpoint, str(status)).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - t0)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before it is stored anywhere."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            msg = await receive()
            if msg.get("type") == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return msg

        async def tracking_send(msg: dict) -> None:
            nonlocal started
            if msg.get("type") == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body over the limit of {self.max_bytes // (1024 * 1024)} MB "
                                     "(--max-upload-mb)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class Admission:
    """At most ``workers`` requests at work and ``queue`` more waiting; the rest are told to come back."""

    def __init__(self, workers: int, queue: int) -> None:
        self._work = threading.BoundedSemaphore(workers)
        self._limit = workers + queue
        self._inside = 0
        self.reading = 0  # request bodies being read (changed on the event loop only)
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        """Every worker and queue place taken, counting requests whose body is still being read (a
        hint read without the lock; the slot decides).  Bodies are held in memory, so this bounds them
        to ``workers + queue`` x ``--max-upload-mb``."""
        return self._inside + self.reading >= self._limit

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Yields False at once when full; else waits for a worker and yields True (blocking: call it
        from a worker thread, never on the event loop)."""
        with self._lock:
            admitted = self._inside < self._limit
            if admitted:
                self._inside += 1
        if not admitted:
            yield False
            return
        try:
            with self._work:
                yield True
        finally:
            with self._lock:
                self._inside -= 1


def create_app(cfg: ServiceConfig) -> Any:
    """The FastAPI application for one gallery (its OpenAPI schema is served at /docs)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    from encoders.decode import DecodeError
    from encoders.preprocess import preprocess

    from encoders.pages import iter_pages_of

    holder = GalleryHolder(cfg)
    admission = Admission(cfg.workers, cfg.queue)
    registry = CollectorRegistry()
    m_requests = Counter("docretriever_requests_total", "HTTP requests", ["endpoint", "status"], registry=registry)
    m_latency = Histogram("docretriever_request_seconds", "Request latency", ["endpoint"], registry=registry)
    m_images = Counter("docretriever_images_total", "Images (pages) classified or embedded", ["endpoint"],
                       registry=registry)
    m_errors = Counter("docretriever_image_errors_total", "Uploaded images that could not be read", registry=registry)
    m_generation = Gauge("docretriever_gallery_generation", "Gallery generation being served", registry=registry)
    m_reload_errors = Gauge("docretriever_gallery_reload_errors", "Failed gallery reloads", registry=registry)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: Any) -> Any:
        yield
        holder.stop()  # the reload thread ends with the service

    app = FastAPI(title="docretriever", version=_version(), lifespan=lifespan,
                  description="Document-type recognition against one register gallery. Scores are cosines in "
                              "[-1, 1]; `accepted` applies the service's operating point.")
    app.state.holder = holder


    def _check_token(request: Request) -> None:
        if not cfg.token:
            raise HTTPException(403, "writes are disabled: start the service with --token-file to allow them")
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), cfg.token.encode()):
            raise HTTPException(403, "wrong token")

    async def _read_form(request: Request) -> tuple[list[tuple[str, bytes]], dict[str, list[str]]]:
        """The multipart body read once into memory (BodyLimit caps its size) and parsed in one pass:
        (uploads under the field ``file`` in order, other fields).  Cheaper per request than spooling
        each upload through a temporary file and validating a form model (scripts/bench_service.py)."""
        from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

        ctype, params = parse_options_header(request.headers.get("content-type", ""))
        if ctype != b"multipart/form-data" or not params.get(b"boundary"):
            raise HTTPException(422, "no files: send one or more under the multipart field 'file' "
                                     "(Content-Type multipart/form-data)")
        body = await request.body()
        parts: list[tuple[dict[bytes, bytes], bytes]] = []
        cur: dict[str, Any] = {}

        def on_part_begin() -> None:
            cur.update(headers={}, data=[], field=b"", value=b"")

        def on_header_field(data: bytes, start: int, end: int) -> None:
            cur["field"] += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            cur["value"] += data[start:end]

        def on_header_end() -> None:
            cur["headers"][cur["field"].lower()] = cur["value"]
            cur["field"], cur["value"] = b"", b""

        def on_part_data(data: bytes, start: int, end: int) -> None:
            cur["data"].append(data[start:end])

        def on_part_end() -> None:
            if len(parts) >= MAX_FILES_PER_REQUEST + MAX_FORM_FIELDS:
                raise HTTPException(413, f"more than {MAX_FILES_PER_REQUEST} files or {MAX_FORM_FIELDS} fields")
            parts.append((cur["headers"], b"".join(cur["data"])))

        parser = MultipartParser(params[b"boundary"], {
            "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_part_data": on_part_data, "on_part_end": on_part_end})
        try:
            parser.write(body)
            parser.finalize()
        except MultipartParseError as exc:
            raise HTTPException(400, f"malformed multipart body ({exc})") from None
        files: list[tuple[str, bytes]] = []
        fields: dict[str, list[str]] = {}
        for headers, data in parts:
            _, disp = parse_options_header(headers.get(b"content-disposition", b""))
            name = disp.get(b"name", b"").decode("utf-8", "replace")
            if name == "file":
                filename = disp.get(b"filename", b"").decode("utf-8", "replace")
                files.append((filename or f"upload-{len(files)}", data))
            elif name:
                fields.setdefault(name, []).append(data.decode("utf-8", "replace"))
        if not files:
            raise HTTPException(422, "no files: send one or more under the multipart field 'file'")
        if len(files) > MAX_FILES_PER_REQUEST:
            raise HTTPException(413, f"{len(files)} files in one request; at most {MAX_FILES_PER_REQUEST}")
        return files, fields

    async def _admitted_form(request: Request) -> tuple[Any, dict[str, list[str]]]:
        """:func:`_read_form` when there is room (counted while the body is read); (None, {}) when full."""
        if admission.full:
            return None, {}
        admission.reading += 1
        try:
            return await _read_form(request)
        finally:
            admission.reading -= 1

    def _busy() -> JSONResponse:
        return JSONResponse({"detail": "busy: too many requests waiting; retry shortly"}, status_code=503,
                            headers={"Retry-After": "1"})

    def _encode_uploads(retriever: Any, uploads: list[tuple[str, bytes]], endpoint: str
                        ) -> tuple[list[dict[str, Any]], list[int], tuple[np.ndarray, np.ndarray | None, list | None]]:
        """Rows (name, page, error) in input order, which rows have images, and their (features, local
        maps: None unless classifying against a gallery that re-ranks, page prints: None unless
        classifying against a gallery that verifies)."""
        enc = retriever.encoder
        classify = endpoint == "/v1/classify"
        verify = classify and retriever.verifies  # pages decoded as Retriever.classify decodes them
        rows: list[dict[str, Any]] = []
        good: list[int] = []
        tensors = []
        prints: list[Any] | None = [] if verify else None
        for name, data in uploads:
            for page, img in iter_pages_of(data, name, retriever.decode_size if verify else enc.input_size):
                row: dict[str, Any] = {"file": name, "page": page, "error": None}
                if isinstance(img, DecodeError):
                    row["error"] = img.reason
                    m_errors.inc()
                else:
                    try:
                        x = preprocess(img, enc.contract)
                        if prints is not None:
                            prints.append(retriever.page_print(img))  # ValueError: a page too small to print
                        tensors.append(x)
                        good.append(len(rows))
                    except (ValueError, DecodeError) as exc:
                        row["error"] = str(exc)
                        m_errors.inc()
                rows.append(row)
        if not tensors:
            feats, maps = np.zeros((0, enc.dim), np.float32), None
        elif retriever.reranks and classify:  # the local maps come from the same forward pass
            feats, maps = enc.encode_batch(np.stack(tensors), local=True)
        else:
            feats, maps = enc.encode_batch(np.stack(tensors)), None
        m_images.labels(endpoint).inc(len(good))
        return rows, good, (feats, maps, prints)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """200 when the model and gallery are loaded."""
        r = holder.current()
        m_generation.set(r.gallery.generation)
        m_reload_errors.set(holder.reload_errors)
        return {"status": "ok", "model": {"name": r.encoder.name, "fingerprint": r.encoder.fingerprint},
                "gallery": {"path": str(cfg.gallery), "generation": r.gallery.generation, "labels": r.n_labels,
                            "exemplars": r.count},
                "operating_point": r.operating_point.summary(), "last_reload_error": holder.last_error}

    def _admitted(uploads: list[tuple[str, bytes]], endpoint: str) -> tuple[Any, list, list, Any] | None:
        """Encode uploads within an admission slot: (retriever, rows, good rows, features), None if full."""
        with admission.slot() as ok:
            if not ok:
                return None
            retriever = holder.current()
            return (retriever, *_encode_uploads(retriever, uploads, endpoint))

    def _classify_sync(uploads: list[tuple[str, bytes]], labels: list[str] | None = None) -> Any:
        got = _admitted(uploads, "/v1/classify")
        if got is None:
            return _busy()
        retriever, rows, good, (feats, maps, prints) = got
        try:
            results = retriever.classify_features(feats, labels=labels, local=maps, pages=prints) if len(good) else []
        except RetrieverError as exc:  # a label filter naming labels the gallery does not hold
            return JSONResponse({"detail": str(exc)}, status_code=422)
        op = retriever.operating_point
        for i, res in zip(good, results):
            d = res.to_dict()
            for key in ("source", "page"):  # the upload's own name and page are in the row already
                d.pop(key, None)
            rows[i].update(d, operating_point=op.label)
        return {"results": rows, "gallery_generation": retriever.gallery.generation,
                "model": {"name": retriever.encoder.name, "fingerprint": retriever.encoder.fingerprint}}

    upload_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                     "description": "images, TIFF or PDF (one result per page)"},
            "labels": {"type": "array", "items": {"type": "string"},
                       "description": "search only these labels (repeat the field); filtered inside the index "
                                      "search"}}}}}}}

    @app.post("/v1/classify", openapi_extra=upload_body)
    async def classify(request: Request) -> Any:
        """Classify uploads: ``{"results": [...]}`` in input order (pages in order), each as
        `retriever classify --json` gives it (``top_k`` entries name the exemplar: id and source).
        An unknown label in ``labels`` is a 422 naming it.  A full queue answers 503 before the body is read."""
        files, fields = await _admitted_form(request)
        if files is None:
            return _busy()
        return await run_in_threadpool(_classify_sync, files, fields.get("labels") or None)

    def _embed_sync(uploads: list[tuple[str, bytes]]) -> Any:
        got = _admitted(uploads, "/v1/embed")
        if got is None:
            return _busy()
        retriever, rows, good, (feats, _, _) = got
        for i, f in zip(good, feats):
            rows[i]["vector"] = [round(float(x), 7) for x in f]
        return {"results": rows, "model": {"name": retriever.encoder.name,
                                           "fingerprint": retriever.encoder.fingerprint, "dim": retriever.encoder.dim}}

    @app.post("/v1/embed", openapi_extra=upload_body)
    async def embed(request: Request) -> Any:
        """Feature vectors (L2-normalised) of uploads, with the model's fingerprint (what `indexer import` reads)."""
        files, _ = await _admitted_form(request)
        if files is None:
            return _busy()
        return await run_in_threadpool(_embed_sync, files)

    @app.get("/v1/labels")
    def labels() -> dict[str, Any]:
        r = holder.current()
        return {"labels": r.gallery.label_counts(), "generation": r.gallery.generation}

    @app.get("/v1/thresholds")
    def thresholds() -> dict[str, Any]:
        r = holder.current()
        from .thresholds import OpenSetTable

        g = r.gallery
        table = OpenSetTable.resolve(g.calibration, g.self_calibration, fingerprint=r.encoder.fingerprint)
        return {"operating_point": r.operating_point.to_dict(),
                "open_set": [{"fpir": x.fpir, "threshold": x.threshold, "dir": None if np.isnan(x.dir) else x.dir,
                              "rule": x.rule.name, "from": x.origin} for x in table.rows],
                "pair_table": r.table.to_dict()}

    def _add_sync(uploads: list[tuple[str, bytes]], label: str) -> Any:
        from indexer.errors import GalleryError
        from indexer.gallery import Gallery

        with admission.slot() as ok:
            if not ok:
                return _busy()
            with tempfile.TemporaryDirectory(prefix="docretriever-upload-") as tmp:
                paths = []
                for i, (name, data) in enumerate(uploads):
                    safe = f"{i:04d}-" + "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name)[:80]
                    p = Path(tmp) / safe
                    p.write_bytes(data)
                    paths.append(p)
                try:
                    g = Gallery.open(cfg.gallery, encoder=cfg.encoder)
                    res = g.add(paths, label=label)
                except GalleryError as exc:
                    return JSONResponse({"detail": str(exc)}, status_code=422)
        holder.reload_if_changed()
        return {"added_ids": res.added_ids, "skipped": res.skipped, "notes": res.notes, "generation": res.generation}

    items_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "label"], "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "label": {"type": "string", "description": "the label the uploads are registered under"}}}}}}}

    @app.post("/v1/items", openapi_extra=items_body)
    async def add_items(request: Request) -> Any:
        """Register uploads as exemplars of ``label`` (needs the bearer token; all or nothing, like `indexer add`)."""
        _check_token(request)
        files, fields = await _admitted_form(request)
        if files is None:
            return _busy()
        labels = fields.get("label") or []
        if len(labels) != 1 or not labels[0]:
            raise HTTPException(422, "give exactly one form field 'label' (the label to register the files under)")
        return await run_in_threadpool(_add_sync, files, labels[0])

    @app.delete("/v1/items")
    def delete_items(request: Request, label: list[str] = Query(default=[]), id: list[int] = Query(default=[])) -> Any:
        """Remove every exemplar of ``label`` and/or the items ``id`` (needs the bearer token)."""
        _check_token(request)
        if not label and not id:
            raise HTTPException(422, "give ?label= and/or ?id=")
        from indexer.errors import GalleryError
        from indexer.gallery import Gallery

        try:
            g = Gallery.open(cfg.gallery)
            gone = g.remove(labels=label, ids=id)
        except GalleryError as exc:
            raise HTTPException(404 if "not in gallery" in str(exc) else 422, str(exc)) from None
        holder.reload_if_changed()
        return {"removed_ids": gone, "generation": g.generation}

    @app.get("/metrics")
    def metrics() -> Any:
        r = holder.current()
        m_generation.set(r.gallery.generation)
        m_reload_errors.set(holder.reload_errors)
        return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, max_bytes=cfg.max_upload_bytes)
    app.add_middleware(Metrics, requests=m_requests, latency=m_latency)
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("docretriever")
    except Exception:  # pragma: no cover - a source tree that was never installed
        return "0"


def serve(cfg: ServiceConfig, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info") -> None:
    """Run the service until interrupted (uvicorn, one process)."""
    import uvicorn

    uvicorn.run(create_app(cfg), host=host, port=port, log_level=log_level, access_log=False)
