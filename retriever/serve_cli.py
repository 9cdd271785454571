"""``retriever serve``: the click command in front of :mod:`retriever.service` (needs ``docretriever[serve]``)."""
from __future__ import annotations

from pathlib import Path

import click

from indexer.cli_shared import model_options, search_param_option, search_params_of

from .defaults import TOP_K



@click.command("serve", short_help="Serve one gallery over HTTP (classify, embed, labels, writes with a token).")
@click.option("--gallery", "-g", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Gallery directory to serve; changes made by other processes are picked up within ~1 s.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--fpir", type=float, default=None, help="Operating point: open-set FPIR [default: 0.01].")
@click.option("--fpr", type=float, default=None, help="Pair-table operating point instead (cosine rule).")
@click.option("--threshold", type=float, default=None, help="Explicit cosine threshold instead.")
@click.option("--top-k", type=click.IntRange(min=1), default=TOP_K, show_default=True)
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="File whose first line is the bearer token that allows writes (POST/DELETE /v1/items); "
                   "without it the service is read-only.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.01), default=32.0, show_default=True,
              help="Largest request body; bigger ones get 413.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Requests encoded at once [default: 2 per CPU core].")
@click.option("--queue", type=click.IntRange(min=0), default=16, show_default=True,
              help="Requests waiting beyond the workers; more get 503 + Retry-After.")
@model_options()
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
@search_param_option
def serve(gallery: Path, host: str, port: int, fpir: float | None, fpr: float | None, threshold: float | None,
          top_k: int, token_file: Path | None, max_upload_mb: float, workers: int | None, queue: int, model: str | None,
          backend: str, gpu_id: int, log_level: str, search_param_pairs: tuple[str, ...]) -> None:
    """Serve GALLERY over HTTP.  The API is described at http://HOST:PORT/docs.

    \b
    GET  /healthz             model, gallery generation, labels, exemplars
    POST /v1/classify         multipart files under "file" -> results (TIFF/PDF: one per page)
    POST /v1/embed            multipart files -> vectors + model fingerprint
    GET  /v1/labels, /v1/thresholds, /metrics (Prometheus)
    POST /v1/items            files + form "label" (bearer token)
    DELETE /v1/items?label=X or ?id=N (bearer token)
    """
    if sum(v is not None for v in (fpir, fpr, threshold)) > 1:
        raise click.UsageError("give one operating point: --fpir, --fpr or --threshold, not both")
    try:
        from .service import ServiceConfig, read_token, serve as run
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"`retriever serve` needs the serve extra ({exc.name} is missing): "
                                   "pip install 'docretriever[serve]'") from None
    import encoders

    from .cli import _setup_errors

    try:
        token = read_token(token_file) if token_file else None
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        from indexer.gallery import gallery_model

        enc = encoders.load(model if model is not None else gallery_model(gallery), backend=backend, gpu_id=gpu_id)
        cfg = ServiceConfig(gallery, enc, fpir=fpir, fpr=fpr, threshold=threshold, top_k=top_k, token=token,
                            max_upload_mb=max_upload_mb, workers=workers, queue=queue,
                            search_params=search_params_of(search_param_pairs))
        run(cfg, host=host, port=port, log_level=log_level)
    except _setup_errors() as exc:
        raise click.ClickException(str(exc)) from None
