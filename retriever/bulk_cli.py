"""``retriever run``: bulk classification of files, directories, globs and path lists into Parquet.

Registered into the ``retriever`` group by ``cli.add_command(run)``.  Exit status: 0 every input
classified (accepted or rejected), 3 some inputs could not be read (each has an error row; the
rest are classified), 1 setup error (gallery, model, threshold, output in the way, refused
resume), 2 usage error, 130 interrupted (committed results are kept; run again to resume).
"""
from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import click

from indexer.cli_shared import (EXIT_INPUT_ERRORS, EXIT_INTERRUPTED, model_options, search_param_option,
                                search_params_of)

from .defaults import BATCH_SIZE, TOP_K, WORKERS
def _display(quiet: bool, inputs: Sequence[str], kind: str) -> Any:
    """The progress display this command draws (the library draws none): a bar or periodic lines."""
    if quiet:
        return None
    from .bulk_progress import Progress

    return Progress.for_job(list(inputs), kind)


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bar or progress lines; summary only.")


def _setup_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "cannot start" (one message, exit 1): see :func:`retriever.errors.setup_errors`."""
    from .errors import setup_errors

    return setup_errors()


def _sigterm_to_interrupt() -> Any:
    """SIGTERM (a scheduler stopping the job) ends like Ctrl-C: complete rows are committed first."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. some test runners)
        return None


@click.command("run", short_help="Classify many scans into a Parquet file (resumable).",
               context_settings={"help_option_names": ["-h", "--help"]},
               epilog="Exit status: 0 all inputs classified, 3 some inputs unreadable (error rows), 1 setup error, "
                      "2 usage error, 130 interrupted (run the same command again to resume).")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--gallery", "-g", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Gallery directory (built with `indexer build`).")
@click.option("--output", "-o", "out", required=True, type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
              help="Result file; the name picks the format: .parquet (typed, with the run's metadata), .jsonl, "
                   ".csv, or - for JSON lines on stdout as rows complete. Progress lives in OUTPUT.parts/ until "
                   "the job completes.")
@click.option("--fpir", type=float, default=None,
              help="Operating point: the share of documents of unregistered types accepted, from the gallery's own "
                   "open-set table (your calibration, else its self-calibration) [default: 0.01].")
@click.option("--fpr", type=float, default=None,
              help="Pair-table operating point instead (the reference project's meaning: share of different-type "
                   "pairs above the threshold; cosine rule).")
@click.option("--threshold", type=float, default=None, help="Explicit threshold instead: a cosine in [-1, 1], or on a gallery "
              "that re-ranks a re-ranked score (may exceed 1).")
@click.option("--top-k", type=click.IntRange(min=1), default=TOP_K, show_default=True, help="Distinct labels per row.")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=WORKERS, show_default=True,
              help="Decode+inference threads (local) or actors (ray).")
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH_SIZE, show_default=True,
              help="Files per batch (one ONNX call, one FAISS search).")
@click.option("--features", "with_features", is_flag=True, help="Add a `vector` column (the float32 feature).")
@click.option("--label", "labels", multiple=True, metavar="LABEL",
              help="Search only these labels (repeatable): a workflow that knows the document is one of a few types. "
                   "Filtered inside the index search, so top-k and margin are among these labels.")
@click.option("--overwrite", is_flag=True, help="Discard an interrupted or finished run at OUTPUT and start again.")
@search_param_option
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: threads on this machine; ray: actors on a Ray cluster (needs docretriever[ray]).")
@click.option("--ray-address", default=None,
              help="Ray cluster to join (e.g. ray://head:10001 or auto); default: start a local Ray instance.")
@model_options()
@quiet_option
def run(inputs: tuple[str, ...], gallery: Path, out: Path, fpir: float | None, fpr: float | None,
        threshold: float | None, top_k: int,
        workers: int, batch_size: int, with_features: bool, labels: tuple[str, ...], overwrite: bool,
        search_param_pairs: tuple[str, ...], engine: str,
        ray_address: str | None, model: str | None, backend: str, gpu_id: int, quiet: bool) -> None:
    """Classify INPUT... against GALLERY into one result file (-o: .parquet, .jsonl, .csv or - for stdout),
    one row per page.

    INPUT: image or PDF files, directories (recursive, sorted), globs ('scans/**/*.jpg'),
    list files (@list.txt or any .txt, one path per line), or a table column of paths
    (paths.parquet:COLUMN, paths.csv:COLUMN; default column `path`).  Multi-page TIFF and PDF
    files give one row per page (PDF needs docretriever[pdf]).

    Interrupted? Run the same command again: it continues where it stopped.  It refuses if the
    inputs, model, gallery generation, threshold, top-k, --label or --features differ (--overwrite restarts).
    """
    if sum(v is not None for v in (fpir, fpr, threshold)) > 1:
        raise click.UsageError("give one operating point: --fpir, --fpr or --threshold, not both")
    if ray_address and engine != "ray":
        raise click.UsageError("--ray-address needs --engine ray")
    import encoders

    from .bulk import format_summary, run_bulk
    from .outputs import OutputError, output_format

    try:
        fmt = output_format(out)
    except OutputError as exc:
        raise click.UsageError(str(exc)) from None
    with _output_target(out, fmt, overwrite) as (target, on_rows):
        summary = _run_job(lambda: run_bulk(
            list(inputs), str(gallery), target, encoder=_encoder(encoders, model, gallery, backend, gpu_id),
            fpir=fpir, fpr=fpr, threshold=threshold, top_k=top_k, workers=workers, batch_size=batch_size,
            with_features=with_features, resume=True, progress=_display(quiet, inputs, "run"),
            overwrite=overwrite or fmt == "stdout",
            engine=engine, ray_address=ray_address, labels=list(labels) or None, on_rows=on_rows,
            search_params=search_params_of(search_param_pairs), report=_say), out)
    _finish(summary, format_summary)


def _encoder(encoders: Any, model: str | None, gallery: Path, backend: str, gpu_id: int) -> Any:
    from indexer.gallery import gallery_model

    try:
        return encoders.load(model if model is not None else gallery_model(gallery), backend=backend, gpu_id=gpu_id)
    except _setup_errors() as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _output_target(out: Path, fmt: str, overwrite: bool) -> Iterator[tuple[Path, Any]]:
    """Where the job writes its Parquet, and a row callback: Parquet goes to OUTPUT itself; JSON lines
    and CSV are written from a hidden Parquet beside OUTPUT when the job completes (resumable like
    any job until then); `-` streams rows to stdout from a temporary directory (not resumable)."""
    from .outputs import convert, write_rows

    if fmt == "parquet":
        yield out, None
        return
    if fmt == "stdout":
        tmp = Path(tempfile.mkdtemp(prefix="docretriever-run-"))
        stream = sys.stdout
        try:
            yield tmp / "results.parquet", lambda table: (write_rows(table, stream, "jsonl"), stream.flush())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    if out.exists() and not overwrite:
        raise click.ClickException(f"{out} already exists; rerun with --overwrite to replace it")
    hidden = out.with_name(f".{out.name}.parquet")
    yield hidden, None
    convert(hidden, out, fmt)
    hidden.unlink()


def _run_job(job: Any, out: Path) -> dict[str, Any]:
    """Run a bulk job with the CLI's error mapping: setup errors exit 1, Ctrl-C/SIGTERM 130."""
    errors = _setup_errors()
    previous = _sigterm_to_interrupt()
    try:
        return job()
    except errors as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: completed results are kept beside {out}; run the same command again to "
                   "resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ModuleNotFoundError as exc:
        if exc.name == "ray":
            raise click.ClickException("--engine ray needs Ray: pip install 'docretriever[ray]'") from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _finish(summary: dict[str, Any], format_summary: Any) -> None:
    """The job's summary on stderr (the library prints none), and its exit status."""
    click.echo(format_summary(summary), err=True)
    if summary["errors"]:
        click.echo(f"{summary['errors']} of {summary['rows']} rows are errors (unreadable inputs); see the "
                   "`error` column", err=True)
        sys.exit(EXIT_INPUT_ERRORS)


@click.command("embed", short_help="Encode many scans into a Parquet file of vectors (resumable).",
               context_settings={"help_option_names": ["-h", "--help"]},
               epilog="Exit status: 0 all inputs encoded, 3 some inputs unreadable (error rows), 1 setup error, "
                      "2 usage error, 130 interrupted (run the same command again to resume).")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--output", "-o", "out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Vectors file (Parquet). Progress lives in OUTPUT.parts/ until the job completes.")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=WORKERS, show_default=True,
              help="Decode+inference threads.")
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH_SIZE, show_default=True,
              help="Files per batch (one ONNX call).")
@click.option("--overwrite", is_flag=True, help="Discard an interrupted or finished run at OUTPUT and start again.")
@model_options("default: the shipped default model.")
@quiet_option
def embed(inputs: tuple[str, ...], out: Path, workers: int, batch_size: int, overwrite: bool, model: str | None,
          backend: str, gpu_id: int, quiet: bool) -> None:
    """Encode INPUT... into one Parquet file of vectors, one row per page.

    Same inputs as `retriever run` (files, directories, globs, @lists, table columns; TIFF and PDF
    pages).  Columns: path, page, vector (256 float32, L2-normalised; null on error rows), sha256 (of
    the file), error.  The model's name, fingerprint and dimension are in the file's metadata, so
    `indexer import` reads it as is:

    \b
      retriever embed register/ -o vectors.parquet
      indexer import gallery/ vectors.parquet --label-from-path folder
      indexer import gallery/ labelled.parquet --label-column doc_type

    Interrupted? Run the same command again: it continues where it stopped (refused if the inputs
    or the model differ; --overwrite restarts).
    """
    import encoders

    from .bulk import format_summary, run_embed
    from .outputs import OutputError, output_format

    try:
        output_format(out, allowed=("parquet",))
    except OutputError as exc:
        raise click.UsageError(f"{exc} (vectors are written as Parquet, the form `indexer import` reads)") from None
    try:
        encoder = encoders.load(model, backend=backend, gpu_id=gpu_id)
    except _setup_errors() as exc:
        raise click.ClickException(str(exc)) from None
    summary = _run_job(lambda: run_embed(list(inputs), out, encoder=encoder, workers=workers, batch_size=batch_size,
                                         resume=True, progress=_display(quiet, inputs, "embed"), overwrite=overwrite,
                                         report=_say), out)
    _finish(summary, format_summary)
