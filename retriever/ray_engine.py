"""``--engine ray``: the bulk pipeline on a Ray cluster (optional extra ``docretriever[ray]``).

Same work, same output as the local engine: the driver expands the inputs lazily and feeds
``{seq, path, problem}`` records to Ray Data (``ray.data.from_items``, in chunks of
:data:`CHUNK_FILES` so the driver never holds millions of paths), ``map_batches`` runs an actor
pool whose actors each hold the encoder and the gallery and call the very
:meth:`retriever.bulk_batch.BatchProcessor.process` the local threads call (decode + encode +
search, each file guarded so a bad file costs exactly one error row), and the results stream
back in input order (``preserve_order``) into the same resumable part store, which merges them
into one Parquet file.

Why not ``ray.data.read_images``: one empty file aborts the whole job, and with error tolerance
whole blocks are dropped silently.  Why stream results to the driver instead of
``write_parquet`` on the workers: a result row is ~200 bytes, so the driver is never the
bottleneck, the output needs no storage shared by all nodes, and the job stays resumable with
the same guarantees as the local engine.  Inputs and the gallery must be readable at the same
paths on every node (shared file system).

Cluster use: ``retriever run scans/ -g gallery -o results.parquet --engine ray
--ray-address auto`` on a node of a running cluster (``ray start --head`` / ``ray start
--address HEAD:6379``), or ``--ray-address ray://HEAD:10001`` through Ray Client;
docretriever must be installed on every node.  Without an address a local Ray instance is
started (about 5 s and 1-2 GB before any work) and stopped at the end.

Facts measured with Ray 2.60 on 2 CPUs: an actor pool of 2 actors with 1 CPU each hung for more
than 10 minutes (the pool left no CPU for the tasks feeding it), so actors ask for a fraction
of a CPU: ``min(1, (cluster CPUs - 1) / actors)``.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from .bulk_batch import SEQ, BatchProcessor, chunked
from .defaults import BATCH_SIZE, WORKERS
from .errors import BulkError

if TYPE_CHECKING:
    from .bulk_progress import ProgressSink
    from .bulk_store import PartStore
    from encoders.inputs import InputItem

__all__ = ["CHUNK_FILES", "RayClassifier", "actor_cpus", "run_ray"]

CHUNK_FILES = 100_000  # inputs per Ray dataset: bounds driver memory; actors restart per chunk


class RayClassifier:
    """Actor: loads the encoder and gallery once, then classifies record batches of files."""

    def __init__(self, config: dict, batch_size: int) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import cv2

        cv2.setNumThreads(1)
        from .run_config import RunConfig

        cfg = RunConfig.from_dict(config)  # the driver's decisions, as they are: nothing rebuilt here
        self.processor = BatchProcessor(cfg.retriever(), with_features=cfg.with_features, batch_size=batch_size)

    def __call__(self, batch: pa.Table) -> pa.Table:
        seqs = batch.column("seq").to_pylist()
        paths = batch.column("path").to_pylist()
        problems = [p or None for p in batch.column("problem").to_pylist()]
        return self.processor.process(seqs, paths, problems)


def actor_cpus(cluster_cpus: float, actors: int) -> float:
    """CPUs each actor asks for: whole CPUs on a big cluster, a fraction on a small machine so the
    tasks that feed the pool always find a CPU (a full-CPU pool on 2 CPUs hung in measurements)."""
    if cluster_cpus <= 1:
        return 0.5 / max(actors, 1)
    return round(min(1.0, max(0.05, (cluster_cpus - 1) / max(actors, 1))), 3)


def _quiet_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False  # ours is enough
    try:
        ctx.verbose_stats_logs = False
    except AttributeError:  # pragma: no cover - older Ray
        pass
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def run_ray(items: Iterator[tuple[int, "InputItem"]], processor: BatchProcessor, store: "PartStore",
            prog: "ProgressSink", actors: int = WORKERS, batch_size: int = BATCH_SIZE, address: str | None = None,
            chunk_files: int = CHUNK_FILES) -> None:
    """Classify ``items`` on Ray into ``store`` (see the module doc); the driver's ``processor``
    supplies the model, gallery and threshold the actors must use."""
    import ray
    import ray.data

    from .run_config import RunConfig

    retriever = processor.retriever
    if retriever is None:
        raise BulkError("--engine ray classifies against a gallery; `retriever embed` runs on the local engine")
    cfg = RunConfig.of(retriever, processor.with_features)
    if not cfg.model_path or not os.path.isfile(cfg.model_path):
        raise BulkError("--engine ray needs the encoder loaded from a model file")
    if cfg.gallery_path is None or not os.path.isdir(cfg.gallery_path):
        raise BulkError("--engine ray needs an on-disk gallery directory (actors open it themselves)")

    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        started = True
    try:
        _quiet_ray_data()
        per_actor = actor_cpus(float(ray.cluster_resources().get("CPU", 1.0)), actors)
        gpu = 1.0 if cfg.backend in ("cuda", "tensorrt") else 0.0
        kwargs = {"config": {**cfg.to_dict(), "model_path": os.path.abspath(cfg.model_path)}, "batch_size": batch_size}
        last_seq = store.files_done - 1
        for chunk in chunked(items, chunk_files):
            records = [{"seq": s, "path": it.path, "problem": it.problem or ""} for s, it in chunk]
            blocks = max(1, min(len(records) // max(batch_size * 2, 1), 1000))
            ds = ray.data.from_items(records, override_num_blocks=blocks)
            del records
            out = ds.map_batches(RayClassifier, fn_constructor_kwargs=kwargs, batch_size=batch_size,
                                 batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
                                 num_cpus=per_actor, num_gpus=gpu or None, zero_copy_batch=True)
            for table in out.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
                if table.num_rows == 0:
                    continue
                store.append(table, complete=False)
                seq_max = int(pc.max(table.column(SEQ)).as_py())
                prog.update(max(seq_max - last_seq, 0), table.num_rows,
                            table.num_rows - table.column("error").null_count)
                last_seq = max(last_seq, seq_max)
    finally:
        if started:
            ray.shutdown()
