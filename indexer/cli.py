"""`indexer`: build and maintain register galleries from the command line.

Every failure is a one-message error (exit status 1) naming the file and what to do; nothing is
half-written, because every write goes through the gallery's atomic commit.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from .errors import GalleryError
from .gallery import DEFAULT_LOCK_TIMEOUT, NEAR_DUPLICATE_BOUND, AddResult, Gallery
from .labels import LABEL_MODES

MODEL_HELP = "ONNX model file (default: the model shipped with docretriever, or $DOCRETRIEVER_MODEL)."
CHECK_MODEL_HELP = ("ONNX model file; if given, the gallery must have been built with it (default: no check, "
                    "no model loaded).")


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into click errors: one clear message, exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from encoders import DecodeError, EncoderError

        try:
            return fn(*args, **kwargs)
        except (GalleryError, EncoderError, DecodeError) as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None

    return wrapper


def _load_encoder(model: str | None) -> Any:
    import encoders

    return encoders.load(model)


def _progress(total: int) -> Any:
    """A tqdm bar on an interactive stderr, nothing otherwise (logs and tests stay clean)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, disable=not sys.stderr.isatty() or total < 20,
                leave=False)


def _report(result: AddResult, verb: str, gallery: Gallery) -> None:
    for line in result.skipped:
        click.echo(f"skipped: {line}", err=True)
    for line in result.near_duplicates:
        click.echo(f"warning: near-duplicate accepted (--force): {line}", err=True)
    labels = gallery.labels_of(result.added_ids) if result.added_ids else []
    click.echo(f"{verb} {result.added} image(s) under {len(set(labels))} label(s); {gallery.path} now holds "
               f"{gallery.count} vector(s), {len(gallery.label_counts())} label(s) (generation {gallery.generation})")


lock_timeout_option = click.option(
    "--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, show_default=True,
    help="Seconds to wait for another writer holding GALLERY/.lock.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Build and maintain docretriever register galleries (FAISS index + Parquet items + manifest).

    \b
    Typical use:
      indexer build register_data/ -o gallery/          # one folder per document type
      indexer add gallery/ new_types/                   # more types, labels from folders
      indexer add gallery/ scan.jpg --label invoice     # one more exemplar
      indexer list gallery/
      indexer verify gallery/
    """


@cli.command()
@click.argument("register_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Gallery directory to create.")
@click.option("--label-mode", type=click.Choice(LABEL_MODES), default="folder", show_default=True,
              help="folder: label = image's folder path (one folder per type); file: label = folders + file stem "
                   "joined by '_', one image per label.")
@click.option("--model", type=click.Path(dir_okay=False, exists=True), default=None, help=MODEL_HELP)
@click.option("--force", is_flag=True, help="Accept near-identical images under different labels.")
@click.option("--overwrite", is_flag=True, help="Rebuild an existing gallery in place (atomically; ids continue).")
@click.option("--near-duplicate-bound", type=click.FloatRange(-1.0, 1.0), default=NEAR_DUPLICATE_BOUND,
              show_default=True, help="Cosine at or above which images under different labels count as "
                                      "near-duplicates (stored in the gallery, used by later adds).")
@lock_timeout_option
@_errors
def build(register_dir: Path, out: Path, label_mode: str, model: str | None, force: bool, overwrite: bool,
          near_duplicate_bound: float, lock_timeout: float) -> None:
    """Encode every image of REGISTER_DIR into a new gallery.

    \b
    Folder mode (default): REGISTER_DIR/<type>/... ; every image below a folder is an exemplar of
    that type, label = folder path relative to REGISTER_DIR ("passport/de").  Images directly in
    REGISTER_DIR are refused.  File mode: label = folder parts + file stem joined by "_"
    (REGISTER_DIR/id/de.png -> "id_de"); two files giving one label are refused.
    Hidden files are skipped; images: .jpg .jpeg .png .bmp .tif .tiff .webp.

    \b
    Examples:
      indexer build register_data/ -o gallery/
      indexer build refs/ -o gallery/ --label-mode file --model my-model.onnx
      indexer build register_data/ -o gallery/ --overwrite --model new-model.onnx
    """
    from .labels import scan_register

    enc = _load_encoder(model)
    n = len(scan_register(register_dir, label_mode).entries)
    with _progress(n) as bar:
        g = Gallery.build(register_dir, out, enc, label_mode=label_mode, force=force, overwrite=overwrite,
                          near_duplicate_bound=near_duplicate_bound, lock_timeout=lock_timeout,
                          progress=bar.update)
    assert g.last_result is not None
    _report(g.last_result, "built gallery with", g)


@cli.command()
@click.argument("gallery", type=click.Path(file_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--label", default=None, help="Label for every file and every image below every directory given.")
@click.option("--model", type=click.Path(dir_okay=False, exists=True), default=None, help=MODEL_HELP)
@click.option("--force", is_flag=True, help="Accept near-identical images under different labels.")
@click.option("--near-duplicate-bound", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Near-duplicate cosine bound for this batch (default: the gallery's, set at build).")
@lock_timeout_option
@_errors
def add(gallery: Path, paths: tuple[Path, ...], label: str | None, model: str | None, force: bool,
        near_duplicate_bound: float | None, lock_timeout: float) -> None:
    """Add images (files or directories) to GALLERY.

    Without --label, a directory is read like a register (labels from its folders, in the
    gallery's label mode) and single files are refused.  Images already registered (same bytes)
    are skipped; an unreadable file makes the whole batch add nothing.

    \b
    Examples:
      indexer add gallery/ new_types/
      indexer add gallery/ scan1.jpg scan2.png --label invoice
      indexer add gallery/ lookalike.jpg --label receipt --force
    """
    enc = _load_encoder(model)
    g = Gallery.open(gallery, enc, lock_timeout=lock_timeout)
    from .ingest import resolve_inputs

    n = len(resolve_inputs(list(paths), label, g.label_mode))
    with _progress(n) as bar:
        result = g.add(list(paths), label=label, force=force, near_duplicate_bound=near_duplicate_bound,
                       progress=bar.update)
    _report(result, "added", g)


@cli.command()
@click.argument("gallery", type=click.Path(file_okay=False, path_type=Path))
@click.option("--label", "labels", multiple=True, help="Remove every exemplar of this label (repeatable).")
@click.option("--id", "ids", multiple=True, type=int, help="Remove this item id (repeatable).")
@lock_timeout_option
@_errors
def remove(gallery: Path, labels: tuple[str, ...], ids: tuple[int, ...], lock_timeout: float) -> None:
    """Remove labels and/or item ids from GALLERY.

    Removed ids are never reused.

    \b
    Examples:
      indexer remove gallery/ --label invoice
      indexer remove gallery/ --id 12 --id 13
    """
    if not labels and not ids:
        raise click.UsageError("give at least one --label or --id")
    g = Gallery.open(gallery, lock_timeout=lock_timeout)
    gone = g.remove(labels=list(labels), ids=list(ids))
    shown = ", ".join(map(str, gone[:20])) + (" ..." if len(gone) > 20 else "")
    click.echo(f"removed {len(gone)} item(s) (ids {shown}); {g.path} now holds {g.count} vector(s), "
               f"{len(g.label_counts())} label(s) (generation {g.generation})")


@cli.command(name="list")
@click.argument("gallery", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: [{label, count}, ...].")
@click.option("--model", type=click.Path(dir_okay=False, exists=True), default=None, help=CHECK_MODEL_HELP)
@_errors
def list_(gallery: Path, as_json: bool, model: str | None) -> None:
    """List GALLERY's labels with their exemplar counts.

    \b
    Examples:
      indexer list gallery/
      indexer list gallery/ --json | jq '.[].label'
    """
    g = Gallery.open(gallery, _load_encoder(model) if model else None)
    counts = g.label_counts()
    if as_json:
        click.echo(json.dumps([{"label": k, "count": v} for k, v in counts.items()], indent=2))
        return
    width = max((len(k) for k in counts), default=5)
    for k, v in counts.items():
        click.echo(f"{k:<{width}}  {v}")
    click.echo(f"{len(counts)} label(s), {g.count} image(s)")


@cli.command()
@click.argument("gallery", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--model", type=click.Path(dir_okay=False, exists=True), default=None, help=CHECK_MODEL_HELP)
@_errors
def stats(gallery: Path, as_json: bool, model: str | None) -> None:
    """Show GALLERY's size, encoder, index and generation.

    \b
    Examples:
      indexer stats gallery/
      indexer stats gallery/ --json
    """
    g = Gallery.open(gallery, _load_encoder(model) if model else None)
    s = g.stats()
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    enc = s["encoder"]
    sizes = s["sizes"]
    rows = [
        ("gallery", s["gallery"]), ("vectors", s["vectors"]), ("labels", s["labels"]), ("dim", s["dim"]),
        ("index spec", f"{s['index_spec']} ({s['metric']})"), ("bytes per vector", s["bytes_per_vector"]),
        ("encoder", f"{enc['name']} (fingerprint {enc['fingerprint']})"), ("label mode", s["label_mode"]),
        ("generation", f"{s['generation']} (previous: {s['previous_generation']})"), ("next id", s["next_id"]),
        ("near-duplicate bound", s["near_duplicate_bound"]), ("calibrated", s["calibrated"]),
        ("created", s["created_at"]), ("updated", s["updated_at"]),
        ("index file", f"{g.manifest['index_file']} ({sizes['index_file']} bytes)"),
        ("items file", f"{g.manifest['items_file']} ({sizes['items_file']} bytes)"),
        ("directory total", f"{sizes['directory_total']} bytes"),
    ]
    for k, v in rows:
        click.echo(f"{k + ':':<22}{v}")


@cli.command()
@click.argument("gallery", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sample", type=click.IntRange(min=0), default=20, show_default=True,
              help="Sources to re-encode and compare with the stored vectors (0: skip).")
@click.option("--model", type=click.Path(dir_okay=False, exists=True), default=None, help=MODEL_HELP)
@_errors
def verify(gallery: Path, sample: int, model: str | None) -> None:
    """Check GALLERY's files agree and its vectors reproduce.

    Re-encodes a sample of sources that still exist (unchanged) and requires cosine >= 1 - 1e-4
    with the stored vectors.  Exit status 1 lists every problem.

    \b
    Examples:
      indexer verify gallery/
      indexer verify gallery/ --sample 0          # structure only, no model needed
    """
    from .verify import verify as run_verify

    g = Gallery.open(gallery, strict=False)  # load inconsistent files too, to list every problem
    enc = _load_encoder(model) if sample > 0 else None
    rep = run_verify(g, enc, sample=sample)
    for note in rep.notes:
        click.echo(f"note: {note}", err=True)
    if rep.problems:
        raise click.ClickException(f"{g.path}: {len(rep.problems)} problem(s):\n"
                                   + "\n".join(f"  - {p}" for p in rep.problems))
    click.echo(f"OK: {g.path} generation {g.generation}, {g.count} vector(s), {len(g.label_counts())} label(s); "
               f"{rep.reencoded} re-encoded within tolerance")


@cli.command()
@click.argument("gallery", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file to write.")
@click.option("--model", type=click.Path(dir_okay=False, exists=True), default=None, help=CHECK_MODEL_HELP)
@_errors
def export(gallery: Path, out: Path, model: str | None) -> None:
    """Export GALLERY with its vectors to one Parquet file.

    Columns: id, label, source, sha256, vector (fixed_size_list<float32>[dim]).

    The encoder name, fingerprint and dim are stored in the file's key-value metadata.

    \b
    Example:
      indexer export gallery/ -o gallery.parquet
    """
    from .export import export_parquet

    g = Gallery.open(gallery, _load_encoder(model) if model else None)
    n = export_parquet(g, out)
    click.echo(f"exported {n} vector(s) ({g.dim}-d, encoder {g.encoder_info['name']}) to {out}")


@cli.command()
@click.argument("gallery", type=click.Path(file_okay=False, path_type=Path))
@lock_timeout_option
@_errors
def rollback(gallery: Path, lock_timeout: float) -> None:
    """Undo GALLERY's last write (restore the previous generation).

    Running it twice redoes the write.  Ids stay unique.  Works when the current generation's
    files are missing or corrupt (only manifest.json must be readable).

    \b
    Example:
      indexer rollback gallery/
    """
    from .gallery import _read_manifest

    before = int(_read_manifest(gallery)["generation"])
    g = Gallery.rollback_at(gallery, lock_timeout=lock_timeout)  # works even if the current files are broken
    click.echo(f"rolled back {g.path}: generation {g.generation} restores the content before generation {before} "
               f"({g.count} vector(s), {len(g.label_counts())} label(s))")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`indexer`, `python -m indexer`)."""
    cli.main(args=argv, prog_name="indexer")


if __name__ == "__main__":  # pragma: no cover
    main()
