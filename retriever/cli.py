"""``retriever`` command line: classify images, show the threshold table, calibrate a gallery.

Exit status: 0 all inputs classified (accepted or rejected), 3 some inputs could not be read
(each has an error line; the others are still classified), 1 the setup failed (gallery, model,
threshold), 2 bad usage.  ``retriever run`` (bulk jobs, resumable Parquet) also exits 130 when interrupted.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import click

from indexer.cli_shared import (CONTEXT_SETTINGS, EXIT_INPUT_ERRORS, apply_verbosity, model_options,
                                search_param_option, search_params_of, verbosity, verbosity_options)

from .defaults import BATCH_SIZE, DEFAULT_FPIR, TOP_K



def _setup_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "cannot start" (one message, exit 1): see :func:`retriever.errors.setup_errors`."""
    from .errors import setup_errors

    return setup_errors()


def _load_encoder(model: str | None, backend: str, gpu_id: int, gallery: Path | None = None) -> Any:
    """``--model``, else the model the gallery was built with (found by its fingerprint among the default
    model, the path the gallery recorded, and the shipped models), else the default model."""
    import encoders

    try:
        if model is None and gallery is not None:
            from indexer.gallery import gallery_model

            model = gallery_model(gallery)
        return encoders.load(model, backend=backend, gpu_id=gpu_id)
    except _setup_errors() as exc:
        raise click.ClickException(str(exc)) from None


def _label_width(gallery: Any, cap: int = 40) -> int:
    """Column width for labels: the longest gallery label, within [5, cap]."""
    try:
        labels = list(gallery.label_counts())
    except AttributeError:
        labels = []
    return max(5, min(cap, max((len(x) for x in labels), default=24)))


model_option = model_options()  # --model (the gallery's own by default), --backend, --gpu-id


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="docretriever", prog_name="retriever")
@verbosity_options
def main(verbose: int, quiet_logs: bool) -> None:
    """Classify document images against a register gallery.

    Scores are cosine similarities in [-1, 1]; the reference project's score is (cos+1)/2.
    Every option also reads DOCRETRIEVER_<COMMAND>_<OPTION> from the environment
    (DOCRETRIEVER_CLASSIFY_GALLERY=gallery retriever classify scan.jpg).
    """
    apply_verbosity(verbose, quiet_logs)


@main.command("classify", short_help="Classify images or directories against a gallery.", epilog="Exit status: 0 all inputs classified (ACCEPT or REJECT), 3 some inputs "
                                 "could not be read (error lines; the others are still classified), "
                                 "1 setup error (gallery, model, threshold), 2 usage error.")
@click.argument("paths", nargs=-1, required=True)
@click.option("--gallery", "-g", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Gallery directory (built with `indexer build`).")
@click.option("--fpir", type=float, default=None,
              help="Operating point: the share of documents of unregistered types you accept to let through, read "
                   "from the gallery's own open-set table (your calibration, else its self-calibration) "
                   "[default: 0.01].")
@click.option("--fpr", type=float, default=None,
              help="Pair-table operating point instead (the reference project's meaning: the share of "
                   "different-type pairs above the threshold; decided on the cosine alone).")
@click.option("--threshold", type=float, default=None,
              help="Explicit threshold instead: a cosine in [-1, 1] (a reference-project (cos+1)/2 score t is "
                   "cosine 2t-1), or on a gallery that re-ranks a re-ranked score (may exceed 1).")
@click.option("--top-k", type=click.IntRange(min=1), default=TOP_K, show_default=True,
              help="Distinct labels listed per image.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.option("--label", "labels", multiple=True, metavar="LABEL",
              help="Search only these labels (repeatable): a workflow that knows the document is one of a few types. "
                   "Filtered inside the index search, so top-k and margin are among these labels.")
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH_SIZE, show_default=True)
@search_param_option
@model_option
def classify_cmd(paths: tuple[str, ...], gallery: Path, fpir: float | None, fpr: float | None,
                 threshold: float | None, top_k: int, as_json: bool, labels: tuple[str, ...], batch_size: int,
                 search_param_pairs: tuple[str, ...], model: str | None, backend: str, gpu_id: int) -> None:
    """Classify PATHS against GALLERY: one line per page.

    PATHS as `retriever run` reads them: image or PDF files, directories (recursive, sorted), globs
    ('scans/**/*.jpg'), list files (@list.txt), table columns (paths.parquet:COLUMN).  Multi-page
    TIFF and PDF files give one line per page (#page=N after the first).

    Prints path, best label, score (cosine), margin to the runner-up label, ACCEPT/REJECT and the
    runner-up; with --json, one object per line: {"path", "label", "score", "accepted", "threshold",
    "margin", "decision_score", "rule", "operating_point", "top_k": [{"label", "score", "id", "source"}]}
    (id and source: the label's best exemplar in the gallery), "page", "error": null}, or
    {"path", "page", "error"} for an unreadable input or page.  The default operating point is FPIR 0.01 of the gallery's own table.
    """
    if sum(v is not None for v in (fpir, fpr, threshold)) > 1:
        raise click.UsageError("give one operating point: --fpir, --fpr or --threshold, not both")
    from encoders.decode import DecodeError

    from .retriever import Retriever

    encoder = _load_encoder(model, backend, gpu_id, gallery)
    try:
        retriever = Retriever(gallery, encoder=encoder, fpir=fpir, fpr=fpr, threshold=threshold, top_k=top_k,
                              labels=list(labels) or None, search_params=search_params_of(search_param_pairs))
    except _setup_errors() as exc:
        raise click.ClickException(str(exc)) from None
    op = retriever.operating_point
    if verbosity() >= 0:  # -v: where the operating point comes from, in full
        scores = ("; scores: cosine re-ranked by local maps, verified by registration" if retriever.verifies else
                  "; scores: cosine re-ranked by local maps" if retriever.reranks else "")
        click.echo(f"# {retriever.gallery_name}: {retriever.count} exemplars, {retriever.n_labels} labels{scores}; "
                   f"{op.describe() if verbosity() >= 1 else op.summary()}", err=True)

    from .errors import InputError
    from encoders.inputs import expand_inputs as read_inputs, source_and_text

    try:
        inputs = list(read_inputs([str(p) for p in paths]))
    except InputError as exc:
        raise click.ClickException(str(exc)) from None
    multi = any(it.path.lower().endswith((".tif", ".tiff", ".pdf")) for it in inputs)
    width = max([len(it.path) for it in inputs] + [4]) + (8 if multi else 0)  # room for "#page=N"
    lwidth = _label_width(retriever.gallery)
    failed_inputs: set[str] = set()

    def shown(path: str, page: int) -> str:
        return path if not page else f"{path}#page={page}"

    def emit_error(path: str, page: int, reason: str) -> None:
        failed_inputs.add(path)
        if as_json:
            click.echo(json.dumps({"path": path, "page": page, "error": reason}))
        else:
            click.echo(f"{shown(path, page):<{width}}  ERROR: {reason}")

    if not as_json:
        click.echo(f"{'path':<{width}}  {'label':<{lwidth}} {'score':>7} {'margin':>7}  {'decision':<8}  runner-up")

    def classify_stream() -> Iterator[tuple[str, Any]]:
        """(shown path, Result | DecodeError | problem text), inputs in order, pages in order."""
        batch: dict[str, str] = {}  # file to read -> path as shown (the same unless the name is not UTF-8)

        def flush() -> Iterator[tuple[str, Any]]:
            if batch:
                for src, outcome in retriever.classify_iter(list(batch), batch_size=batch_size):
                    yield batch[src], outcome
                batch.clear()

        for it in inputs:
            if it.problem is not None:
                yield from flush()
                yield it.path, it.problem
                continue
            source, text = source_and_text(it.path)
            batch[source] = text
            if len(batch) >= batch_size:
                yield from flush()
        yield from flush()

    for path, outcome in classify_stream():
        if isinstance(outcome, str):
            emit_error(path, 0, outcome)
        elif isinstance(outcome, DecodeError):
            emit_error(path, int(getattr(outcome, "page", 0) or 0), outcome.reason)
        elif as_json:
            d = outcome.to_dict()
            d.pop("source", None)
            click.echo(json.dumps({"path": path, **d, "operating_point": op.label}))
        else:
            ru = outcome.runner_up
            runner = f"{ru[0]} ({ru[1]:.4f})" if ru else "-"
            margin = "-" if outcome.margin is None else f"{outcome.margin:.4f}"
            click.echo(f"{shown(path, outcome.page):<{width}}  {outcome.label:<{lwidth}} {outcome.score:>7.4f} "
                       f"{margin:>7}  {'ACCEPT' if outcome.accepted else 'REJECT':<8}  {runner}")
    if failed_inputs:
        click.echo(f"{len(failed_inputs)} of {len(inputs)} inputs could not be (fully) classified", err=True)
        sys.exit(EXIT_INPUT_ERRORS)


@main.command("thresholds", short_help="Print the operating tables in use.")
@click.option("--gallery", "-g", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Gallery whose own tables (your calibration, its self-calibration) are shown.")
@click.option("--fpir", type=float, default=None, help="Mark the open-set row used for this target [default: 0.01].")
@click.option("--fpr", type=float, default=None, help="Mark the pair-table row used for this target FPR instead.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the open-set rows, the one in use, the pair table.")
@model_option
def thresholds_cmd(gallery: Path | None, fpir: float | None, fpr: float | None, as_json: bool, model: str | None,
                   backend: str, gpu_id: int) -> None:
    """Print the operating tables in use and which row decides.

    Open set (what a user meets): FPIR, the share of documents of unregistered types accepted as
    anything, and DIR, the share of registered ones given their own type and accepted.  Rows come
    from, in order of precedence: your calibration (`retriever calibrate`), the gallery's
    self-calibration (simulated captures of its exemplars, leave one type out), and, when neither
    measured the row, the model's pair table.  The pair table (TPR at pair FPR, the reference
    project's meaning) is printed below it; --fpr picks from it.
    """
    from .thresholds import OpenSetTable, ThresholdError, ThresholdTable, choose_operating_point, scoring_for

    if fpir is not None and fpr is not None:
        raise click.UsageError("give --fpir or --fpr, not both")
    encoder = _load_encoder(model, backend, gpu_id, gallery)
    calibration = self_cal = None
    name = "gallery"
    n_labels = 0
    scoring = scoring_for(encoder)  # a gallery built by this model scores this way
    if gallery is not None:
        from indexer.gallery import Gallery

        try:
            g = Gallery.open(gallery, encoder=encoder)
        except _setup_errors() as exc:
            raise click.ClickException(str(exc)) from None
        calibration, self_cal = g.calibration, g.self_calibration
        n_labels = len(g.label_counts())
        name = f"gallery {gallery}"
        scoring = scoring_for(encoder, g)
    if as_json:
        click.echo(json.dumps(_thresholds_json(encoder, calibration, self_cal, n_labels, name, gallery is not None,
                                               fpir, fpr, scoring)))
        return
    try:
        table = ThresholdTable.resolve(encoder.contract, calibration, gallery=name, scoring=scoring)
        if gallery is not None:
            open_table = OpenSetTable.resolve(calibration, self_cal, gallery=name, fingerprint=encoder.fingerprint)
            click.echo(open_table.to_markdown(selected_fpir=None if fpr is not None else (fpir or DEFAULT_FPIR)) if open_table
                       else f"No open-set table for {name}" + (f" ({'; '.join(open_table.notes)})" if open_table.notes
                                                               else "") + ".\n")
            try:
                op = choose_operating_point(encoder.contract, calibration, self_cal, n_labels, fpir=fpir, fpr=fpr,
                                            gallery=name, fingerprint=encoder.fingerprint, scoring=scoring)
                click.echo(f"In use: {op.describe()}\n")
            except ThresholdError as exc:
                click.echo(f"In use: nothing can be chosen: {exc}\n")
        click.echo("Pair table (the reference project's TPR at FPR; accept iff " + (
            "the re-ranked score (cosine moved by the local-map re-ranking) >= threshold" if scoring == "reranked"
            else "cosine >= threshold") + "):\n")
        click.echo(table.to_markdown(selected_fpr=fpr), nl=False)
    except _setup_errors() as exc:
        raise click.ClickException(str(exc)) from None


def _thresholds_json(encoder: Any, calibration: Any, self_cal: Any, n_labels: int, name: str, has_gallery: bool,
                     fpir: float | None, fpr: float | None, scoring: str) -> dict[str, Any]:
    from .thresholds import OpenSetTable, ThresholdError, ThresholdTable, choose_operating_point

    out: dict[str, Any] = {"model": {"name": encoder.name, "fingerprint": encoder.fingerprint}, "gallery": None,
                           "scoring": scoring}
    try:
        out["pair_table"] = ThresholdTable.resolve(encoder.contract, calibration, gallery=name,
                                                   scoring=scoring).to_dict()
    except ThresholdError as exc:
        out["pair_table"] = {"error": str(exc)}
    if has_gallery:
        out["gallery"] = name
        t = OpenSetTable.resolve(calibration, self_cal, gallery=name, fingerprint=encoder.fingerprint)
        out["open_set"] = {"rows": [{"fpir": r.fpir, "threshold": r.threshold, "dir": r.dir,
                                     "measured_fpir": r.measured_fpir, "rule": r.rule.name, "source": r.origin}
                                    for r in t.rows], "notes": list(t.notes)}
        try:
            out["in_use"] = choose_operating_point(encoder.contract, calibration, self_cal, n_labels, fpir=fpir,
                                                   fpr=fpr, gallery=name, fingerprint=encoder.fingerprint,
                                                   scoring=scoring).to_dict()
        except ThresholdError as exc:
            out["in_use"] = {"error": str(exc)}
    return out


@main.command("calibrate", short_help="Measure a gallery's threshold table on labelled images.")
@click.argument("labelled_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--gallery", "-g", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Gallery to calibrate; its manifest receives the measured table.")
@click.option("--fpr", "fprs", type=float, multiple=True,
              help="Target FPR rows (repeatable) [default: 1e-5 1e-4 1e-3 1e-2 1e-1].")
@model_option
def calibrate_cmd(labelled_dir: Path, gallery: Path, fprs: tuple[float, ...], model: str | None, backend: str,
                  gpu_id: int) -> None:
    """Measure a threshold table for GALLERY on LABELLED_DIR (your own labelled documents)."""
    try:
        from retriever.calibrate import calibrate_gallery
    except ModuleNotFoundError as exc:
        if exc.name not in ("retriever.calibrate",):
            raise
        raise click.ClickException("`retriever calibrate` is not available: this installation has no "
                                   "retriever.calibrate module") from None
    encoder = _load_encoder(model, backend, gpu_id, gallery)
    try:
        result = calibrate_gallery(str(gallery), str(labelled_dir), encoder, fprs=list(fprs) or None)
    except _setup_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result["table_markdown"])


from .bulk_cli import embed as _embed_cmd  # noqa: E402
from .bulk_cli import run as _run_cmd  # noqa: E402  (the bulk job lives in its own module)
from .serve_cli import serve as _serve_cmd  # noqa: E402  (the HTTP service; needs docretriever[serve] to run)

main.add_command(_run_cmd)
main.add_command(_embed_cmd)
main.add_command(_serve_cmd)

if __name__ == "__main__":  # pragma: no cover
    main()
