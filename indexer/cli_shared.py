"""What both command lines (`indexer`, `retriever`) share: exit codes, context settings, verbosity.

One place, so the two tools read alike: ``-h/--help``, ``-v/--verbose`` (repeat for debug) and
``-q/--quiet`` on the group, ``DOCRETRIEVER_<COMMAND>_<OPTION>`` environment defaults for every
option (click's ``auto_envvar_prefix``: ``DOCRETRIEVER_CLASSIFY_GALLERY=g retriever classify x.jpg``),
and the same exit statuses.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import click

EXIT_OK = 0
EXIT_SETUP = 1          # gallery, model, operating point or output unusable (one message)
EXIT_USAGE = 2          # click's own
EXIT_INPUT_ERRORS = 3   # some inputs unreadable: each has its error line or row, the rest were processed
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM; committed work is kept (run again to resume)

ENV_PREFIX = "DOCRETRIEVER"
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100,
                                    "auto_envvar_prefix": ENV_PREFIX}


def _set_level(ctx: click.Context, verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    ctx.meta["docretriever.verbosity"] = -1 if quiet else verbose


def verbosity_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-v/--verbose`` (count) and ``-q/--quiet`` for a group: the log level of every command."""
    fn = click.option("-q", "--quiet", "quiet_logs", is_flag=True, help="Only errors in the log.")(fn)
    return click.option("-v", "--verbose", "verbose", count=True,
                        help="More log detail (-v info, -vv debug).")(fn)


def apply_verbosity(verbose: int, quiet_logs: bool) -> None:
    _set_level(click.get_current_context(), verbose, quiet_logs)


def verbosity(ctx: click.Context | None = None) -> int:
    """-1 quiet, 0 default, 1 -v, 2 -vv (for commands that print more with -v)."""
    ctx = ctx or click.get_current_context(silent=True)
    return int(ctx.find_root().meta.get("docretriever.verbosity", 0)) if ctx else 0


LOG_EVERY_S = 5.0  # off a terminal: one progress line this often


class Progress:
    """Progress of a long command: a tqdm bar on a terminal; off one (logs, CI, cron), a plain line on
    stderr every LOG_EVERY_S seconds, so a long job is never silent and a log is never flooded."""

    def __init__(self, total: int | None, desc: str, unit: str = "img", stream: Any = None) -> None:
        import sys
        import time

        self.stream = stream if stream is not None else sys.stderr
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.start = self.last = time.monotonic()
        self.bar = None
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        import time

        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_S:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            of = f"/{self.total}" if self.total else ""
            print(f"{self.desc}: {self.done}{of} {self.unit} ({rate:.1f}/s)", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


MODEL_NAMES_HELP = "ONNX model file or shipped model name (default, default-int8, precise)"
GALLERY_MODEL_DEFAULT = ("default: the gallery's own model when it can be found (the file it was built with, or a "
                         "shipped model with its fingerprint), else the shipped model.")


def backend_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--backend``/``--gpu-id`` wherever images are encoded, the same on both CLIs (vectors do not
    depend on it: a gallery binds to the model file's fingerprint)."""
    from encoders.runtime import BACKENDS

    fn = click.option("--gpu-id", type=int, default=0, show_default=True, help="GPU for cuda/tensorrt.")(fn)
    return click.option("--backend", type=click.Choice(BACKENDS), default="cpu", show_default=True,
                        help="ONNX Runtime execution provider.")(fn)


def model_options(default: str = GALLERY_MODEL_DEFAULT) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--model`` (a file or a shipped name; ``default`` says what is used without it) and
    :func:`backend_options`."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = backend_options(fn)
        return click.option("--model", metavar="MODEL", default=None, help=f"{MODEL_NAMES_HELP}; {default}")(fn)

    return decorate


SEARCH_PARAM_HELP = ("Search parameter KEY=VALUE for approximate galleries (repeatable): nprobe (IVF), efSearch (HNSW), "
                     "rerank; overrides the gallery's tuned default (`indexer stats` shows it).")


def search_param_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--search-param", "search_param_pairs", multiple=True, metavar="KEY=VALUE",
                        help=SEARCH_PARAM_HELP)(fn)


def search_params_of(pairs: tuple[str, ...]) -> dict | None:
    """``--search-param`` values as the dict the gallery's search takes (checked), None when none given."""
    if not pairs:
        return None
    from .errors import GalleryError
    from .specs import check_search_params, parse_param_pairs

    try:
        return check_search_params(parse_param_pairs(pairs))
    except GalleryError as exc:
        raise click.UsageError(str(exc)) from None
