"""Bulk classification: millions of scans in, one Parquet file of results out, resumable.

>>> from retriever.bulk import run_bulk
>>> summary = run_bulk(["scans/", "@more.txt"], "gallery/", "results.parquet", workers=2)

A pipeline, not a loop: inputs are expanded lazily (:mod:`encoders.inputs`), cut into batches
of ``batch_size`` files, and each batch is decoded (reduced-resolution JPEG decoding, one row per
TIFF/PDF page), encoded (one batched ONNX call) and searched (one batched FAISS search) by one of
``workers`` threads (:class:`retriever.bulk_batch.BatchProcessor`; OpenCV, ONNX Runtime and
FAISS release the GIL).  At most ``2 * workers`` batches are in flight, so memory stays bounded
whatever the number of inputs.  Finished batches are committed, in input order, to numbered
Parquet parts (:mod:`retriever.bulk_store`), merged into ``out`` at the end.

A killed job continues where it stopped when run again with the same output (``resume=True``);
it refuses when the inputs, model, gallery generation, threshold, top-k or feature setting
differ, naming which (``overwrite=True`` starts again).  Unreadable inputs get an error row and
the job goes on.  ``engine="ray"`` runs the same per-batch function on a Ray cluster
(:mod:`retriever.ray_engine`).
"""
from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq


from .bulk_batch import BatchProcessor, chunked, embed_schema, output_schema
from .bulk_meta import embed_identity, embed_metadata, read_result_metadata, run_metadata, with_run_metadata
from .bulk_progress import Progress, ProgressSink, Silent
from .bulk_store import PartStore, Tally, identity_differences, inputs_digest, now_iso, parts_dir_for, tally_columns
from .defaults import BATCH_SIZE, TOP_K, WORKERS
from .errors import BulkError, ResumeRefusedError
from encoders.inputs import InputItem
from .run_config import RunConfig

if TYPE_CHECKING:
    from encoders import Encoder

    from .retriever import Retriever

__all__ = ["BulkError", "ResumeRefusedError", "format_summary", "run_bulk", "run_embed"]


def _make_retriever(gallery: Any, encoder: "Encoder | None", fpr: float | None, threshold: float | None,
                    top_k: int, fpir: float | None = None, labels: Sequence[str] | None = None,
                    search_params: dict | None = None) -> "Retriever":
    from .retriever import Retriever

    if isinstance(gallery, Retriever):
        return gallery
    return Retriever(gallery, encoder=encoder, fpr=fpr, threshold=threshold, top_k=top_k, fpir=fpir, labels=labels,
                     search_params=search_params)


def run_local(items: Iterator[tuple[int, InputItem]], processor: BatchProcessor, store: PartStore, prog: ProgressSink,
              workers: int, batch_size: int, address: str | None = None) -> None:
    """The local engine: batches to a thread pool, at most ``2 * workers`` in flight, committed in input
    order.  (``address`` is the Ray engine's; engines share one signature.)"""
    from concurrent.futures import ThreadPoolExecutor

    max_inflight = max(2, 2 * workers)
    window: deque[tuple[int, Any]] = deque()

    def drain_one() -> None:
        n, fut = window.popleft()
        table = fut.result()
        store.append(table, complete=True)
        prog.update(n, table.num_rows, table.num_rows - table.column("error").null_count)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bulk")
    try:
        for chunk in chunked(items, batch_size):
            seqs = [s for s, _ in chunk]
            paths = [it.path for _, it in chunk]
            problems = [it.problem for _, it in chunk]
            window.append((len(chunk), pool.submit(processor.process, seqs, paths, problems)))
            while len(window) >= max_inflight:
                drain_one()
        while window:
            drain_one()
    finally:
        for _, fut in window:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def run_on_ray(items: Iterator[tuple[int, InputItem]], processor: BatchProcessor, store: PartStore, prog: ProgressSink,
               workers: int, batch_size: int, address: str | None = None) -> None:
    """The Ray engine (:mod:`retriever.ray_engine`, imported only when used: Ray is an optional extra)."""
    from .ray_engine import run_ray

    run_ray(items, processor, store, prog, actors=workers, batch_size=batch_size, address=address)


ENGINES = {"local": run_local, "ray": run_on_ray}  # one signature: (items, processor, store, progress, workers,
                                                  # batch_size, address)


def _summary(out: Path, status: str, tally: Tally, files: int, resumed_files: int, resumed_rows: int,
             wall: float, engine: str, threshold: float | None, kind: str = "run") -> dict[str, Any]:
    new_rows = tally.rows - resumed_rows
    return {
        "kind": kind, "out": str(out), "status": status, "engine": engine,
        "files": files, "rows": tally.rows, "accepted": tally.accepted, "rejected": tally.rejected,
        "errors": tally.errors, "labels": dict(sorted(tally.labels.items(), key=lambda kv: (-kv[1], kv[0]))),
        "threshold": threshold,
        "resumed_files": resumed_files, "resumed_rows": resumed_rows, "new_rows": new_rows,
        "wall_time_s": round(wall, 3), "scans_per_s": round(new_rows / wall, 2) if wall > 0 else None,
    }


def format_summary(s: dict[str, Any], max_labels: int = 20) -> str:
    """The summary dict as a few human lines (what `retriever run` prints)."""
    kind = s.get("kind", "run")
    lines = [f"retriever {kind}: {s['out']} {s['status']}"]
    lines += [f"  note: {n}" for n in s.get("notes") or []]
    resumed = f" (resumed after {s['resumed_files']} inputs)" if s.get("resumed_files") else ""
    if kind == "embed":
        lines.append(f"  inputs {s['files']}{resumed}; rows {s['rows']}: vectors {s['rows'] - s['errors']}, "
                     f"errors {s['errors']}")
    else:
        lines.append(f"  inputs {s['files']}{resumed}; rows {s['rows']}: accepted {s['accepted']}, "
                     f"rejected {s['rejected']}, errors {s['errors']} (threshold {s['threshold']:.4f} cosine)")
    if s["status"] != "already complete":
        lines.append(f"  this run: {s['new_rows']} rows in {s['wall_time_s']:.1f} s wall = "
                     f"{s['scans_per_s'] or 0:.1f} scans/s ({s['engine']} engine)")
    labels = list(s["labels"].items())
    if labels:
        shown = ", ".join(f"{lab} {n}" for lab, n in labels[:max_labels])
        more = f", ... ({len(labels)} labels)" if len(labels) > max_labels else ""
        lines.append(f"  accepted per label: {shown}{more}")
    return "\n".join(lines)


def _refuse_inside_gallery(out: Path, retriever: "Retriever") -> None:
    """Results never go into the gallery directory: the gallery prunes files it does not know."""
    gpath = getattr(retriever.gallery, "path", None)
    if gpath is None or not os.path.isdir(str(gpath)):
        return
    g = Path(gpath).resolve()
    o = out.resolve()
    if o == g or g in o.parents:
        raise BulkError(f"output {out} is inside the gallery directory {gpath}; write results elsewhere")


def _already_complete(out: Path, specs: Sequence[str], identity: dict[str, Any], overwrite: bool,
                      resume: bool) -> dict[str, Any] | None:
    """If ``out`` is a finished result of this very run, its metadata; refuse if it is in the way."""
    if out.exists() and not out.is_file():
        raise BulkError(f"output {out} exists and is not a regular file; choose another output path")
    if overwrite and out.exists() and read_result_metadata(out) is None:
        raise BulkError(f"{out} exists and is not a docretriever bulk result: --overwrite only replaces results this "
                        "tool wrote (an input, or another program's file?); choose another output path")
    if overwrite or not out.exists() or parts_dir_for(out).exists():
        return None
    meta = read_result_metadata(out)
    if meta is None or not meta.get("complete"):
        raise BulkError(f"{out} exists and is not a docretriever bulk result; choose another output path "
                        "or rerun with --overwrite to replace it")
    if not resume:
        raise BulkError(f"{out} already holds finished results; rerun with --overwrite to replace them")
    diffs = identity_differences(meta.get("identity") or {}, identity, then="finished run")
    if diffs:
        raise ResumeRefusedError(f"{out} holds finished results of another run: " + "; ".join(diffs) +
                                 ". Rerun with --overwrite to replace them, or choose another output path")
    n, digest = inputs_digest(specs)
    if n != meta.get("files") or digest != meta.get("inputs_sha256"):
        raise ResumeRefusedError(f"{out} holds finished results, but the inputs changed since ({meta.get('files')} "
                                 f"inputs then, {n} now, or other paths); rerun with --overwrite to redo them")
    return meta


def run_bulk(inputs: Iterable[str | os.PathLike], gallery: Any, out: str | os.PathLike,
             encoder: "Encoder | None" = None, fpr: float | None = None, threshold: float | None = None, top_k: int = TOP_K,
             workers: int = WORKERS, batch_size: int = BATCH_SIZE, with_features: bool = False, resume: bool = True,
             progress: "ProgressSink | bool | None" = None, overwrite: bool = False, engine: str = "local",
             ray_address: str | None = None,
             part_rows: int | None = None, fpir: float | None = None,
             labels: Sequence[str] | None = None, on_rows: Any = None,
             search_params: dict | None = None, report: Any = None) -> dict[str, Any]:
    """Classify every input into ``out`` (Parquet, one row per page); returns the summary dict.

    ``inputs``: specs as :func:`encoders.inputs.expand_inputs` reads them (files, directories,
    globs, ``@list.txt``, ``table.parquet:column``).  ``gallery``: a gallery directory, an open
    gallery, or a ready :class:`retriever.Retriever` (then ``encoder``/``fpir``/``fpr``/``threshold``/``top_k``/
    ``labels`` are its own; the operating point is as :class:`retriever.Retriever` chooses it: FPIR 1e-2 by
    default).  ``workers``: decode+encode threads (local) or actors (ray).
    ``with_features``: add a ``vector`` column (fixed-size list of float32).
    ``labels``: search only these labels' exemplars.  ``search_params``: per-query index parameters
    (``{"nprobe": 32}``, ``{"efSearch": 256}``) overriding the gallery's tuned defaults.
    ``resume``: continue an interrupted run at ``out`` (refused if it differs);
    ``overwrite``: discard it, and any finished ``out``, and start again.
    ``on_rows``: called with every table of result rows as it is committed, in input order.
    ``progress``: a :class:`retriever.bulk_progress.ProgressSink` told of every committed batch (the
    CLI's bar or periodic lines); ``True`` for that display on stderr; default silent.
    ``report``: called with notes worth saying before the work starts (a resumed run); the library
    prints nothing else: the summary is the returned dict (:func:`format_summary` makes it lines).
    The summary has counts (rows, accepted, rejected, errors, accepted per label), ``wall_time_s``
    and ``scans_per_s`` (rows classified by this call / wall time).
    """
    t0 = time.monotonic()
    specs, out = _check_job(inputs, out, engine, workers, batch_size)
    retriever = _make_retriever(gallery, encoder, fpr, threshold, top_k, fpir, labels, search_params)
    processor = BatchProcessor(retriever, with_features=with_features, batch_size=batch_size)
    identity = RunConfig.of(retriever, with_features).identity(specs)
    meta = run_metadata(specs, retriever, with_features, engine)
    _refuse_inside_gallery(out, retriever)
    schema = output_schema(retriever.encoder.dim, with_features)
    return _execute(specs, out, processor, identity, meta, schema, t0, "run", retriever.threshold, workers=workers,
                    batch_size=batch_size, resume=resume, progress=progress, overwrite=overwrite, engine=engine,
                    ray_address=ray_address, part_rows=part_rows, on_rows=on_rows, report=report)


def run_embed(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, encoder: "Encoder | None" = None,
              workers: int = WORKERS, batch_size: int = BATCH_SIZE, resume: bool = True,
              progress: "ProgressSink | bool | None" = None,
              overwrite: bool = False, part_rows: int | None = None, report: Any = None) -> dict[str, Any]:
    """Encode every input into ``out``: Parquet with ``path``, ``page``, ``vector`` (fixed-size list of
    float32, L2-normalised), ``sha256`` (of the file) and ``error``, and the model's name, fingerprint and
    dim in the file's metadata, so `indexer import` reads it as is (given a label column).  Same inputs,
    resume and error rows as :func:`run_bulk`; no gallery is involved.  Local engine only.
    """
    t0 = time.monotonic()
    specs, out = _check_job(inputs, out, "local", workers, batch_size)
    if encoder is None:
        import encoders

        encoder = encoders.load()
    processor = BatchProcessor(None, batch_size=batch_size, encoder=encoder)
    return _execute(specs, out, processor, embed_identity(specs, encoder), embed_metadata(specs, encoder, "local"),
                    embed_schema(encoder.dim), t0, "embed", None, workers=workers, batch_size=batch_size,
                    resume=resume, progress=progress, overwrite=overwrite, engine="local", ray_address=None,
                    part_rows=part_rows, on_rows=None, report=report)


def _check_job(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, engine: str, workers: int,
               batch_size: int) -> tuple[list[str], Path]:
    if engine not in ENGINES:
        raise BulkError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if batch_size < 1 or workers < 1:
        raise BulkError(f"batch_size and workers must be >= 1 (got {batch_size}, {workers})")
    specs = [str(s) for s in inputs]
    if not specs:
        raise BulkError("no inputs given")
    out = Path(out)
    if out.exists() and out.is_dir():
        raise BulkError(f"output {out} is a directory; give a file name such as {out / 'results.parquet'}")
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover
        pass
    return specs, out


def _execute(specs: list[str], out: Path, processor: BatchProcessor, identity: dict[str, Any], meta: dict[str, Any],
             schema: Any, t0: float, kind: str, threshold: float | None, *, workers: int, batch_size: int,
             resume: bool, progress: "ProgressSink | bool | None", overwrite: bool, engine: str,
             ray_address: str | None,
             part_rows: int | None, on_rows: Any, report: Any = None) -> dict[str, Any]:
    """The job itself, for classification and embedding alike: refuse or reuse a finished output,
    open (or resume) the part store, run the engine, merge."""
    meta["identity"] = identity
    done = _already_complete(out, specs, identity, overwrite, resume)
    if done is not None:
        tally = Tally()
        for batch in pq.ParquetFile(out).iter_batches(columns=tally_columns(pq.read_schema(out))):
            tally.add(pa.Table.from_batches([batch]))
        return _summary(out, "already complete", tally, int(done.get("files", 0)), int(done.get("files", 0)),
                        tally.rows, time.monotonic() - t0, engine, threshold, kind)

    store = PartStore.open(out, identity, with_run_metadata(schema, meta), resume=resume, overwrite=overwrite,
                           part_rows=part_rows)
    store.on_rows = on_rows
    for note in store.notes:  # e.g. "resuming after N inputs": said before the work, not after
        if report is not None:
            report(f"note: {note}")
    resumed_files, resumed_rows = store.files_done, store.rows_done
    items = store.remaining(specs)
    # True: a convenience for Python callers; the CLI passes its own display
    prog: ProgressSink = Progress.for_job(specs, kind) if progress is True else progress or Silent()
    prog.start(resumed_files)
    try:
        ENGINES[engine](items, processor, store, prog, workers, batch_size, ray_address)
        store.finish()
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM) or failed: keep what is complete, so a re-run resumes.
        try:
            store.finish(complete=engine == "local")  # Ray batches may end inside a multi-page file
        except Exception:
            pass
        raise
    finally:
        prog.close()
    final = dict(meta, complete=True, files=store.files_done, rows=store.rows_done, errors=store.tally.errors,
                 inputs_sha256=store.inputs_sha256, started_at=store.progress.get("started_at"),
                 completed_at=now_iso())
    store.merge(final)
    s = _summary(out, "complete", store.tally, store.files_done, resumed_files, resumed_rows,
                 time.monotonic() - t0, engine, threshold, kind)
    s["notes"] = list(store.notes)
    return s
