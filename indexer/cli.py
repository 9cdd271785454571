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
from .cli_shared import CONTEXT_SETTINGS, MODEL_NAMES_HELP, apply_verbosity, backend_options, verbosity_options
from .labels import LABEL_MODES
from .tune import describe as tune_describe

MODEL_HELP = f"{MODEL_NAMES_HELP} (default: the model shipped with docretriever, or $DOCRETRIEVER_MODEL)."
CHECK_MODEL_HELP = (f"{MODEL_NAMES_HELP}; if given, the gallery must have been built with it "
                    "(default: no check, no model loaded).")


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into click errors: one clear message, exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from encoders import DecodeError, EncoderError
        from encoders.inputs import InputError

        try:
            return fn(*args, **kwargs)
        except (GalleryError, EncoderError, DecodeError, InputError) as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None

    return wrapper


def _load_encoder(model: str | None, gallery: Path | None = None, backend: str = "cpu", gpu_id: int = 0) -> Any:
    """``--model``, else (for an existing gallery) the model it was built with when it can be found by its
    fingerprint, else the shipped model."""
    import encoders

    if model is None and gallery is not None:
        from .gallery import gallery_model

        return encoders.load(gallery_model(gallery), backend=backend, gpu_id=gpu_id)
    return encoders.load(model, backend=backend, gpu_id=gpu_id)


def _progress(total: int, desc: str = "encoding") -> Any:
    """A bar on a terminal, a line every few seconds otherwise (:class:`cli_shared.Progress`)."""
    from .cli_shared import Progress

    return Progress(total, desc)


def _report(result: AddResult, verb: str, gallery: Gallery, unit: str = "image") -> None:
    for line in result.skipped:
        click.echo(f"skipped: {line}", err=True)
    for line in result.near_duplicates:
        click.echo(f"warning: near-duplicate accepted (--force): {line}", err=True)
    for line in result.notes:
        click.echo(f"note: {line}", err=True)
    labels = gallery.labels_of(result.added_ids) if result.added_ids else []
    click.echo(f"{verb} {result.added} {unit}(s) under {len(set(labels))} label(s); {gallery.path} now holds "
               f"{gallery.count} vector(s), {len(gallery.label_counts())} label(s) (generation {gallery.generation})")


INDEX_HELP = ("Index type: flat (exact; default), auto (exact while small, IVF above ~10k vectors; for galleries "
              "that grow large), hnsw, ivf, or faiss:<factory string> for experts (e.g. faiss:IVF4096,SQ8). "
              "Recorded in the manifest; see `indexer stats`.")
PARAM_HELP = ("Index parameter KEY=VALUE (repeatable): hnsw M, efConstruction, efSearch, codec (flat|sq8); ivf/auto "
              "nlist, nprobe, codec (pq4fs (default)|flat|sq8|sq4|fp16|pq8..pq64); auto flat_max; rerank (candidates per result "
              "re-scored exactly for compressed codes; 0 = off).")


def index_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help=PARAM_HELP)(fn)
    return click.option("--index", "index_spec", default=None, metavar="SPEC", help=INDEX_HELP)(fn)


def _spec(index_spec: str | None, params: tuple[str, ...], default: str | None = "flat") -> tuple[str | None, dict]:
    from .specs import parse_param_pairs, parse_spec

    if index_spec is None and params and default is None:
        raise click.UsageError("--param needs --index")
    spec = index_spec if index_spec is not None else default
    if spec is None:
        return None, {}
    parsed = parse_spec(spec, parse_param_pairs(params))
    return parsed.text, dict(parsed.params)


def gallery_argument(then: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """GALLERY as the first argument, or ``--gallery/-g`` as in `retriever` (either form, not both).
    ``then`` names the next positional parameter: with ``-g``, the first positional value belongs
    to it (``indexer add -g G scan.jpg``)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, gallery: Path | None = None, gallery_opt: Path | None = None, **kw: Any) -> Any:
            if gallery_opt is not None and gallery is not None:
                if then is None:
                    raise click.UsageError(f"give the gallery once: {gallery} or --gallery {gallery_opt}")
                nxt = kw.get(then)
                kw[then] = (gallery, *nxt) if isinstance(nxt, tuple) else gallery if nxt is None else None
                if kw[then] is None:
                    raise click.UsageError(f"give the gallery once: {gallery} or --gallery {gallery_opt}")
                gallery = gallery_opt
            elif gallery is None:
                gallery = gallery_opt
            if gallery is None:
                raise click.UsageError("which gallery? give it as the first argument or with --gallery/-g")
            if then is not None and kw.get(then) in (None, ()):
                raise click.UsageError(f"missing {then.upper()}")
            return fn(*args, gallery=gallery, **kw)

        wrapper = click.option("--gallery", "-g", "gallery_opt", type=click.Path(file_okay=False, path_type=Path),
                               default=None, help="The gallery (instead of the first argument).")(wrapper)
        # with a following positional, the first value may be a file that belongs to it (checked later)
        kind = click.Path(path_type=Path) if then else click.Path(file_okay=False, path_type=Path)
        return click.argument("gallery", required=False, type=kind)(wrapper)

    return decorate



lock_timeout_option = click.option(
    "--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, show_default=True,
    help="Seconds to wait for another writer holding GALLERY/.lock.")


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="docretriever", prog_name="indexer")
@verbosity_options
def cli(verbose: int, quiet_logs: bool) -> None:
    """Build and maintain docretriever register galleries (FAISS index + Parquet items + manifest).

    \b
    Typical use:
      indexer build register_data/ -o gallery/          # one folder per document type
      indexer add gallery/ new_types/                   # more types, labels from folders
      indexer add gallery/ scan.jpg --label invoice     # one more exemplar
      indexer list gallery/
      indexer verify gallery/
      indexer import big/ vectors.parquet --index auto   # precomputed vectors, any size
      indexer stats big/                                # index type, parameters, bytes per vector

    Every option also reads DOCRETRIEVER_<COMMAND>_<OPTION> from the environment
    (DOCRETRIEVER_ADD_LOCK_TIMEOUT=30); a gallery is the first argument or --gallery/-g.
    """
    apply_verbosity(verbose, quiet_logs)


@cli.command()
@click.argument("register_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", "-g", "--gallery", "out", required=True, type=click.Path(path_type=Path),
              help="Gallery directory to create.")
@click.option("--label-mode", type=click.Choice(LABEL_MODES), default="folder", show_default=True,
              help="folder: label = image's folder path (one folder per type); file: label = folders + file stem "
                   "joined by '_', one image per label.")
@click.option("--model", metavar="MODEL", default=None, help=MODEL_HELP)
@click.option("--force", is_flag=True, help="Accept near-identical images under different labels.")
@click.option("--overwrite", is_flag=True, help="Rebuild an existing gallery in place (atomically; ids continue).")
@click.option("--near-duplicate-bound", type=click.FloatRange(-1.0, 1.0), default=NEAR_DUPLICATE_BOUND,
              show_default=True, help="Cosine at or above which images under different labels count as "
                                      "near-duplicates (stored in the gallery, used by later adds).")
@click.option("--self-calibrate/--no-self-calibrate", "self_calibrate", default=None,
              help="Measure the gallery's own open-set table from simulated captures of its exemplars (leave one "
                   "type out), kept up to date by later writes [default: on; DOCRETRIEVER_SELF_CALIBRATE=0 turns the "
                   "default off].")
@click.option("--rerank/--no-rerank", default=True, show_default=True,
              help="Keep each exemplar's local map (a model with one, like the default: ~23 KB per exemplar) so "
                   "searches re-rank their top candidates by it, which tells look-alike types apart; --no-rerank "
                   "answers with the cosine alone.")
@click.option("--verify", is_flag=True, default=False,
              help="Also keep each exemplar's page print (~150 KB) so `retriever classify` verifies the top candidates "
                   "by registering each capture onto them: +0.09 DIR at FPIR 1e-2 on the benchmark's test split, at "
                   "~4x the CPU per query. Thresholds come from the gallery's self-calibration; `retriever run` verifies "
                   "too, the service refuses such a gallery for now.")
@index_options
@lock_timeout_option
@backend_options
@_errors
def build(register_dir: Path, out: Path, label_mode: str, model: str | None, force: bool, overwrite: bool,
          near_duplicate_bound: float, self_calibrate: bool | None, rerank: bool, verify: bool, index_spec: str | None,
          params: tuple[str, ...], lock_timeout: float, backend: str, gpu_id: int) -> None:
    """Encode every image of REGISTER_DIR into a new gallery.

    \b
    Folder mode (default): REGISTER_DIR/<type>/... ; every image below a folder is an exemplar of
    that type, label = folder path relative to REGISTER_DIR ("passport/de").  Images directly in
    REGISTER_DIR are refused.  File mode: label = folder parts + file stem joined by "_"
    (REGISTER_DIR/id/de.png -> "id_de"); two files giving one label are refused.
    Folders are walked as `retriever run` walks them (sorted, hidden entries skipped, directory
    links not followed); documents: images, TIFF and PDF, every page of which is an exemplar.

    \b
    Examples:
      indexer build register_data/ -o gallery/
      indexer build refs/ -o gallery/ --label-mode file --model my-model.onnx
      indexer build register_data/ -o gallery/ --overwrite --model new-model.onnx
      indexer build big_register/ -o gallery/ --index auto
      indexer build big_register/ -o gallery/ --index hnsw --param efSearch=256
    """
    from .labels import scan_register

    spec, spec_params = _spec(index_spec, params)
    enc = _load_encoder(model, None, backend, gpu_id)
    n = len(scan_register(register_dir, label_mode).entries)
    with _progress(n) as bar:
        g = Gallery.build(register_dir, out, enc, label_mode=label_mode, force=force, overwrite=overwrite,
                          near_duplicate_bound=near_duplicate_bound, lock_timeout=lock_timeout,
                          progress=bar.update, index_spec=spec, index_params=spec_params,
                          self_calibrate=self_calibrate, rerank=rerank, verify=verify)
    assert g.last_result is not None
    _report(g.last_result, "built gallery with", g)


@cli.command()
@gallery_argument(then="paths")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--label", default=None, help="Label for every file and every image below every directory given.")
@click.option("--model", metavar="MODEL", default=None, help=MODEL_HELP)
@click.option("--force", is_flag=True, help="Accept near-identical images under different labels.")
@click.option("--near-duplicate-bound", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Near-duplicate cosine bound for this batch (default: the gallery's, set at build).")
@lock_timeout_option
@backend_options
@_errors
def add(gallery: Path, paths: tuple[Path, ...], label: str | None, model: str | None, force: bool,
        near_duplicate_bound: float | None, lock_timeout: float, backend: str, gpu_id: int) -> None:
    """Add images (files, directories, globs, @lists, table columns) to GALLERY.

    PATHS are read as `retriever run` reads its inputs; every page of a TIFF or PDF is an
    exemplar.  Without --label, each PATH must be a directory, read like a register (labels from
    its folders, in the gallery's label mode).  Images or pages already registered (same bytes)
    are skipped; an unreadable file makes the whole batch add nothing.

    \b
    Examples:
      indexer add gallery/ new_types/
      indexer add gallery/ scan1.jpg scan2.png --label invoice
      indexer add gallery/ 'forms/v2/*.pdf' --label claim_form_v2
      indexer add gallery/ lookalike.jpg --label receipt --force
    """
    enc = _load_encoder(model, gallery, backend, gpu_id)
    g = Gallery.open(gallery, enc, lock_timeout=lock_timeout)
    from .ingest import resolve_inputs

    n = len(resolve_inputs(list(paths), label, g.label_mode))
    with _progress(n) as bar:
        result = g.add(list(paths), label=label, force=force, near_duplicate_bound=near_duplicate_bound,
                       progress=bar.update)
    _report(result, "added", g)


def _self_cal_line(g: Gallery) -> str:
    rec = g.self_calibration or {}
    if not rec.get("enabled"):
        return "off (`indexer calibrate GALLERY` turns it on)"
    rows = [r for r in rec.get("table") or [] if r.get("measurable")]
    if not rows:
        return f"{rec.get('status', 'pending')}: {rec.get('reason') or 'no measurable row'}"
    one = next((r for r in rows if abs(r["fpir"] - 1e-2) < 1e-12), None)
    at = (f"; FPIR 0.01 -> threshold {one['threshold']:.4f} ({rec['rule']['name']}), expected DIR {one['dir']:.3f}"
          if one and one.get("dir") is not None else "")
    return (f"{rec.get('probes')} probes of {rec.get('types_probed')} of {rec.get('types')} types (preset "
            f"{(rec.get('settings') or {}).get('preset')}); FPIR {rows[0]['fpir']:g}..{rows[-1]['fpir']:g} measurable"
            f"{at}")


def _look_alikes_line(g: Gallery) -> str:
    """Which types the self-calibrated threshold is set among, and what to do about it."""
    pairs = (g.self_calibration or {}).get("look_alikes") or []
    said = "; ".join(f"{p['type']} taken for {p['taken_for']} ({p['probes']})" for p in pairs)
    first = pairs[0]
    return (f"of the {first['among']} highest-scoring of {first['of']} leave-one-out probes, which the FPIR "
            f"{first['fpir']:g} threshold ({first['threshold']:.4f}) must clear: {said}.  Types this alike lower DIR "
            "for every type: merge their labels, or register exemplars that show where they differ")


@cli.command()
@gallery_argument()
@click.option("--preset", type=click.Choice(["train", "train_wide", "eval"]), default=None,
              help="Capture model of the probes [default: the gallery's setting, else train].")
@click.option("--min-probes", type=click.IntRange(min=0), default=None, help="Probes in all, at least [default 240].")
@click.option("--off", is_flag=True, help="Turn self-calibration off (the model's pair table is used for --fpir).")
@click.option("--model", metavar="MODEL", default=None, help=MODEL_HELP)
@lock_timeout_option
@backend_options
@_errors
def calibrate(gallery: Path, preset: str | None, min_probes: int | None, off: bool, model: str | None,
              lock_timeout: float, backend: str, gpu_id: int) -> None:
    """Measure GALLERY's own open-set table again, from scratch (or turn it off).

    Simulated captures of each type's first exemplar (its source file must still exist) are scored
    against the gallery with and without their own type; the FPIR -> threshold -> DIR table goes
    into the manifest as a new generation.  Later `indexer add/remove/compact` keep it up to date.
    For a table measured on your own labelled captures, use `retriever calibrate`.
    """
    from .selfcal import Settings

    g = Gallery.open(gallery, lock_timeout=lock_timeout)
    if off:
        g.set_self_calibration(enable=False)
        click.echo(f"self-calibration off for {g.path} (generation {g.generation})")
        return
    old = Settings.from_dict((g.self_calibration or {}).get("settings"))
    settings = Settings(preset=preset or old.preset, min_probes=old.min_probes if min_probes is None else min_probes,
                        min_per_type=old.min_per_type, max_per_type=old.max_per_type, max_types=old.max_types)
    enc = _load_encoder(model, gallery, backend, gpu_id)
    with _progress(min(len(g.label_counts()), settings.max_types)) as bar:
        g.set_self_calibration(True, settings, enc, progress=bar.update)
    for line in (g.last_result.notes if g.last_result else []):
        click.echo(f"note: {line}", err=True)
    click.echo(f"self-calibration of {g.path}: {_self_cal_line(g)} (generation {g.generation})")


@cli.command()
@gallery_argument()
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
    if g.self_calibrated:
        click.echo(f"note: {_self_cal_line(g)}", err=True)
    shown = ", ".join(map(str, gone[:20])) + (" ..." if len(gone) > 20 else "")
    click.echo(f"removed {len(gone)} item(s) (ids {shown}); {g.path} now holds {g.count} vector(s), "
               f"{len(g.label_counts())} label(s) (generation {g.generation})")
    if g.tombstones:
        click.echo(f"note: the {g.plan.type} index cannot delete: {g.tombstones} removed id(s) are tombstones that "
                   f"searches exclude; `indexer compact {g.path}` rebuilds without them", err=True)


@cli.command(name="list")
@gallery_argument()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: [{label, count}, ...] (with --items, one object "
                                                       "per exemplar).")
@click.option("--items", "items", is_flag=True, help="One line per exemplar: id, label, source, added (the ids "
                                                      "`indexer remove --id` takes).")
@click.option("--model", metavar="MODEL", default=None, help=CHECK_MODEL_HELP)
@_errors
def list_(gallery: Path, as_json: bool, items: bool, model: str | None) -> None:
    """List GALLERY's labels with their exemplar counts (--items: every exemplar with its id).

    \b
    Examples:
      indexer list gallery/
      indexer list gallery/ --items
      indexer list gallery/ --json | jq '.[].label'
    """
    g = Gallery.open(gallery, _load_encoder(model) if model else None)
    if items:
        t = g.items
        rows = [{"id": int(i), "label": lab, "source": src,
                 "added_at": at.isoformat(timespec="seconds").replace("+00:00", "Z") if at is not None else None}
                for i, lab, src, at in zip(t.column("id").to_pylist(), t.column("label").to_pylist(),
                                           t.column("source").to_pylist(), t.column("added_at").to_pylist())]
        if as_json:
            for r in rows:
                click.echo(json.dumps(r, ensure_ascii=False))
            return
        width = max((len(r["label"]) for r in rows), default=5)
        click.echo(f"{'id':>6}  {'label':<{width}}  {'added':<20}  source")
        for r in rows:
            click.echo(f"{r['id']:>6}  {r['label']:<{width}}  {(r['added_at'] or '-')[:20]:<20}  {r['source']}")
        click.echo(f"{len(rows)} exemplar(s) under {len(g.label_counts())} label(s)")
        return
    counts = g.label_counts()
    if as_json:
        click.echo(json.dumps([{"label": k, "count": v} for k, v in counts.items()], indent=2))
        return
    width = max((len(k) for k in counts), default=5)
    for k, v in counts.items():
        click.echo(f"{k:<{width}}  {v}")
    click.echo(f"{len(counts)} label(s), {g.count} image(s)")


@cli.command()
@gallery_argument()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--model", metavar="MODEL", default=None, help=CHECK_MODEL_HELP)
@_errors
def stats(gallery: Path, as_json: bool, model: str | None) -> None:
    """Show GALLERY's size, encoder, index (type, parameters, bytes per vector) and generation.

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
    plan = s["index"]
    params = ", ".join(f"{k}={v}" for k, v in plan.items() if k not in ("type", "factory", "reason", "trained_on"))
    exact = s["exact_store"]
    rows = [
        ("gallery", s["gallery"]), ("vectors", s["vectors"]), ("labels", s["labels"]), ("dim", s["dim"]),
        ("index spec", f"{s['index_spec']} ({s['metric']})"
         + (f" {', '.join(f'{k}={v}' for k, v in s['index_params'].items())}" if s["index_params"] else "")),
        ("index type", f"{s['index_type']}: {plan['factory']} ({s['index_class']})"
         + (f"; {params}" if params else "")),
        ("index reason", plan.get("reason", "")),
        ("search tuning", tune_describe(s["search_tuning"]) if plan["type"] != "flat" else "exact index: nothing to tune"),
        ("bytes per vector", f"{s['bytes_per_vector']} in RAM (index file: {s['index_file_bytes_per_vector']})"),
        ("tombstones", f"{s['tombstones']}" + (" (run `indexer compact` to drop them)" if s["tombstones"] else "")),
        ("exact vectors", f"{exact['rows']} rows, {exact['bytes']} bytes ({exact['bytes_per_vector']} per vector, "
                          f"{exact['segments']} segment(s), memory-mapped) for re-ranking" if exact else "none (index "
                          "stores exact vectors)"),
        ("re-ranking", (lambda lo: f"top {lo['k']} by local maps (weight {lo['weight']}); {lo['rows']} maps of "
                        f"{lo['shape'][0]}x{lo['shape'][1]}, {lo['bytes']} bytes ({lo['bytes_per_exemplar']} per "
                        f"exemplar, memory-mapped)" if lo else "off (cosine alone)")(s["local_store"])),
        ("verification", (lambda pg: f"top candidates verified by registration ({pg['comparison']} comparison, weight "
                                           f"{pg['weight']}); {pg['rows']} "
                          f"page prints, {pg['bytes']} bytes ({pg['bytes_per_exemplar']} per exemplar)" if pg else
                          "off")(s["pages_store"])),
        ("memory-mapped index", s["memory_mapped"]),
        ("encoder", f"{enc['name']} (fingerprint {enc['fingerprint']})"), ("label mode", s["label_mode"]),
        ("generation", f"{s['generation']} (previous: {s['previous_generation']})"), ("next id", s["next_id"]),
        ("near-duplicate bound", s["near_duplicate_bound"]), ("calibrated", s["calibrated"]),
        ("self-calibration", _self_cal_line(g)),
        *([("look-alikes", _look_alikes_line(g))] if (g.self_calibration or {}).get("look_alikes") else []),
        ("created", s["created_at"]), ("updated", s["updated_at"]),
        ("index file", f"{g.manifest['index_file']} ({sizes['index_file']} bytes)"),
        ("items file", f"{g.manifest['items_file']} ({sizes['items_file']} bytes)"),
        ("directory total", f"{sizes['directory_total']} bytes"),
    ]
    for k, v in rows:
        click.echo(f"{k + ':':<22}{v}")


@cli.command()
@gallery_argument()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: ok, problems, notes, re-encoded count.")
@click.option("--sample", type=click.IntRange(min=0), default=20, show_default=True,
              help="Sources to re-encode and compare with the stored vectors (0: skip).")
@click.option("--model", metavar="MODEL", default=None, help=MODEL_HELP)
@backend_options
@_errors
def verify(gallery: Path, sample: int, model: str | None, as_json: bool, backend: str, gpu_id: int) -> None:
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
    enc = _load_encoder(model, gallery, backend, gpu_id) if sample > 0 else None
    rep = run_verify(g, enc, sample=sample)
    if as_json:
        click.echo(json.dumps({"gallery": str(g.path), "generation": g.generation, "ok": not rep.problems,
                               "problems": list(rep.problems), "notes": list(rep.notes),
                               "reencoded": rep.reencoded}))
        if rep.problems:
            sys.exit(1)
        return
    for note in rep.notes:
        click.echo(f"note: {note}", err=True)
    if rep.problems:
        raise click.ClickException(f"{g.path}: {len(rep.problems)} problem(s):\n"
                                   + "\n".join(f"  - {p}" for p in rep.problems))
    click.echo(f"OK: {g.path} generation {g.generation}, {g.count} vector(s), {len(g.label_counts())} label(s); "
               f"{rep.reencoded} re-encoded within tolerance")


@cli.command()
@gallery_argument()
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file to write.")
@click.option("--model", metavar="MODEL", default=None, help=CHECK_MODEL_HELP)
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


@cli.command(name="import")
@gallery_argument(then="vectors")
@click.argument("vectors", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", metavar="MODEL", default=None,
              help="ONNX model that made the vectors (default: the encoder named in the file's metadata). "
                   "The gallery is bound to its fingerprint; no image is read.")
@click.option("--label-mode", type=click.Choice(LABEL_MODES), default="folder", show_default=True,
              help="Label mode recorded in a new gallery (for later `indexer add` of directories).")
@click.option("--label-column", default="label", show_default=True, help="Column holding the labels.")
@click.option("--label-from-path", type=click.Choice(LABEL_MODES), default=None,
              help="Labels from the `path` column of a `retriever embed` file instead, as `indexer build` would "
                   "give those files below their common folder (folder: the sub-folder; file: the file name).")
@click.option("--force", is_flag=True, help="Accept near-identical vectors under different labels.")
@click.option("--no-near-duplicate-check", "no_check", is_flag=True,
              help="Skip the near-duplicate check (big imports: it costs one search per vector).")
@click.option("--near-duplicate-bound", type=click.FloatRange(-1.0, 1.0), default=None,
              help=f"Near-duplicate cosine bound (default: the gallery's; {NEAR_DUPLICATE_BOUND} for a new one).")
@index_options
@lock_timeout_option
@_errors
def import_(gallery: Path, vectors: Path, model: str | None, label_mode: str, label_column: str,
            label_from_path: str | None, force: bool, no_check: bool,
            near_duplicate_bound: float | None, index_spec: str | None, params: tuple[str, ...],
            lock_timeout: float) -> None:
    """Add precomputed vectors from a Parquet file to GALLERY (created if missing): the inverse of export.

    \b
    Columns: label (string), vector (list of floats, L2-normalised), optional source and sha256;
    or a `retriever embed` file (path, page, vector, sha256, error) with --label-column or
    --label-from-path (its error rows are skipped and counted).
    Refused, listing 0-based row numbers, with nothing added: vectors of the wrong dimension,
    NaN/inf, or not unit length; null vectors or labels.  Refused: a file whose metadata
    (docretriever.encoder.fingerprint, written by `indexer export`) names another encoder than
    --model or than the gallery's.  A new gallery takes --index/--param (default flat).

    \b
    Examples:
      indexer import gallery/ vectors.parquet --model model.onnx
      indexer export old/ -o g.parquet && indexer import new/ g.parquet --index auto
      indexer import big/ part-0001.parquet --no-near-duplicate-check
      retriever embed register/ -o v.parquet && indexer import gallery/ v.parquet --label-from-path folder
    """
    from .gallery import MANIFEST
    from .importer import read_vectors_file, resolve_encoder

    exists = (gallery / MANIFEST).is_file()
    if exists and (index_spec or params):
        raise click.UsageError(f"{gallery} exists: --index/--param apply to a new gallery; switch index type with "
                               f"`indexer compact {gallery} --index SPEC`")
    spec, spec_params = _spec(index_spec, params)
    g = Gallery.open(gallery, lock_timeout=lock_timeout) if exists else None
    vf = read_vectors_file(vectors, g.dim if g is not None else None, label_column=label_column,
                           label_from_path=label_from_path)
    if vf.skipped_errors:
        click.echo(f"{vectors}: {vf.skipped_errors} row(s) with an error (no vector) skipped", err=True)
    enc = resolve_encoder(vf, _load_encoder(model) if model else None)
    if g is None:
        g = Gallery.create(gallery, enc, label_mode=label_mode, index_spec=spec, index_params=spec_params,
                           near_duplicate_bound=near_duplicate_bound if near_duplicate_bound is not None
                           else NEAR_DUPLICATE_BOUND, lock_timeout=lock_timeout)
    result = g.add_vectors(vf.vectors, vf.labels, sources=vf.sources, sha256=vf.sha256, pages=vf.pages, encoder=enc,
                           force=force, near_duplicate_bound=near_duplicate_bound, check_near_duplicates=not no_check)
    _report(result, "imported", g, unit="vector")


@cli.command()
@gallery_argument()
@index_options
@lock_timeout_option
@_errors
def compact(gallery: Path, index_spec: str | None, params: tuple[str, ...], lock_timeout: float) -> None:
    """Rebuild GALLERY's index from its live vectors (a new generation; rollback undoes it).

    Drops HNSW tombstones (removed items an HNSW index keeps until a rebuild), retrains IVF on
    the current vectors and merges the exact-vector segments.  With --index, switches the
    gallery to another index type.  A 1M-vector HNSW rebuild takes minutes; IVF seconds.

    \b
    Examples:
      indexer compact gallery/
      indexer compact gallery/ --index auto
      indexer compact gallery/ --index ivf --param nlist=4096 --param nprobe=32
    """
    spec, spec_params = _spec(index_spec, params, default=None)
    g = Gallery.open(gallery, lock_timeout=lock_timeout)
    before = g.tombstones
    result = g.compact(spec, spec_params)
    for line in result.notes:
        click.echo(f"note: {line}", err=True)
    click.echo(f"compacted {g.path}: {g.count} vector(s), {g.plan.type} index {g.plan.factory}, {before} tombstone(s) "
               f"dropped (generation {g.generation})")


@cli.command()
@gallery_argument()
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
    from .state import read_manifest as _read_manifest

    before = int(_read_manifest(gallery)["generation"])
    g = Gallery.rollback_at(gallery, lock_timeout=lock_timeout)  # works even if the current files are broken
    click.echo(f"rolled back {g.path}: generation {g.generation} restores the content before generation {before} "
               f"({g.count} vector(s), {len(g.label_counts())} label(s))")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`indexer`, `python -m indexer`)."""
    cli.main(args=argv, prog_name="indexer")


if __name__ == "__main__":  # pragma: no cover
    main()
