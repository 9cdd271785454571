"""Turn command-line input specs into a lazy, deterministic stream of files to classify.

A bulk job over millions of scans must neither hold every path in memory nor depend on the
order a file system happens to list them in: resuming an interrupted job skips the first N
inputs, so the order must be the same on every run.  Hence directories are walked lazily with
each directory's entries sorted by name, globs are sorted, and list files / table columns are
read in file order.

Accepted specs:

* a file: classified as given (a missing file becomes one error row, the job goes on);
* a directory: searched recursively for :data:`SUPPORTED_SUFFIXES` (hidden entries skipped);
* a glob (``scans/**/*.jpg``): matching files, sorted;
* a list of paths, one per line: ``@list.txt``, or any existing ``*.txt`` file
  (blank lines and lines starting with ``#`` skipped);
* a table column of paths: ``paths.parquet:column`` or ``paths.csv:column`` (default column
  ``path``).

Relative paths inside list files and tables are taken as written (relative to the current
directory), like ``tar -T`` or ``xargs``.
"""
from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["InputError", "InputItem", "SUPPORTED_SUFFIXES", "count_inputs", "expand_inputs"]

SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".pdf")
TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")
DEFAULT_COLUMN = "path"
_GLOB_CHARS = set("*?[")


class InputError(ValueError):
    """An input spec cannot be read at all (list file missing, table without the column...)."""


@dataclass(frozen=True)
class InputItem:
    """One input: a path to classify, or a spec that produced nothing (``problem`` says why).

    Each item becomes at least one output row: its pages, or one error row.
    """

    path: str
    problem: str | None = None


def expand_inputs(specs: Iterable[str | os.PathLike]) -> Iterator[InputItem]:
    """Yield the inputs named by ``specs`` lazily, in a deterministic order (see module doc).

    Raises :class:`InputError` (when reached) for a list file or table that cannot be read, or a
    table without the asked column: those are setup mistakes, not bad scans.
    """
    for spec in specs:
        yield from _expand_one(str(spec))


def count_inputs(specs: Iterable[str | os.PathLike]) -> int:
    """How many items :func:`expand_inputs` yields (walks everything once; for progress bars)."""
    return sum(1 for _ in expand_inputs(specs))


def _expand_one(spec: str) -> Iterator[InputItem]:
    if spec.startswith("@"):
        yield from _list_file(spec[1:])
        return
    table = _table_spec(spec)
    if table is not None:
        yield from _table_column(*table)
        return
    p = Path(spec)
    if p.is_dir():
        found = False
        for path in _walk(spec):
            found = True
            yield InputItem(path)
        if not found:
            yield InputItem(spec, f"directory has no supported files ({' '.join(SUPPORTED_SUFFIXES)})")
        return
    if p.is_file():
        if p.suffix.lower() == ".txt":
            yield from _list_file(spec)
        else:
            yield InputItem(spec)
        return
    if _GLOB_CHARS & set(spec):
        matches = sorted(m for m in glob.iglob(spec, recursive=True) if os.path.isfile(m))
        if not matches:
            yield InputItem(spec, "pattern matched no files")
        for m in matches:
            yield InputItem(m)
        return
    yield InputItem(spec)  # missing: the reader reports "file not found" for this row


def _walk(root: str) -> Iterator[str]:
    """Files under ``root`` with a supported suffix, depth first, entries sorted by name.

    Lazy: memory is one directory listing per level, whatever the size of the tree.
    """
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if e.name.startswith("."):
            continue
        path = os.path.join(root, e.name)
        try:
            if e.is_dir():
                yield from _walk(path)
            elif e.is_file() and os.path.splitext(e.name)[1].lower() in SUPPORTED_SUFFIXES:
                yield path
        except OSError:
            continue


def _list_file(path: str) -> Iterator[InputItem]:
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"list file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read list file {path} ({exc.strerror or exc})") from None
    with fh:
        try:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield InputItem(line)
        except UnicodeDecodeError:
            raise InputError(f"list file {path} is not UTF-8 text (one path per line expected)") from None


def _table_spec(spec: str) -> tuple[str, str] | None:
    """``file.parquet:col`` / ``file.csv:col`` / ``file.parquet`` -> (file, column), else None."""
    head, sep, col = spec.rpartition(":")
    if sep and head.lower().endswith(TABLE_SUFFIXES) and col and "/" not in col and "\\" not in col:
        return head, col
    if spec.lower().endswith(TABLE_SUFFIXES):
        return spec, DEFAULT_COLUMN
    return None


def _table_column(path: str, column: str) -> Iterator[InputItem]:
    if not os.path.isfile(path):
        raise InputError(f"table of paths not found: {path}")
    if path.lower().endswith((".csv", ".tsv")):
        yield from _csv_column(path, column, "\t" if path.lower().endswith(".tsv") else ",")
    else:
        yield from _parquet_column(path, column)


def _parquet_column(path: str, column: str) -> Iterator[InputItem]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError
        raise InputError(f"cannot read {path} as Parquet ({exc})") from None
    names = pf.schema_arrow.names
    if column not in names:
        raise InputError(f"{path} has no column {column!r} (columns: {', '.join(names)}); "
                         f"name it as {path}:COLUMN")
    for batch in pf.iter_batches(columns=[column], batch_size=8192):  # streamed: bounded memory
        for value in batch.column(0).to_pylist():
            if value is None or str(value).strip() == "":
                yield InputItem(f"{path}:{column}", "empty path value in the table")
            else:
                yield InputItem(str(value))


def _csv_column(path: str, column: str, delimiter: str) -> Iterator[InputItem]:
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror or exc})") from None
    with fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path} is empty (a header row naming the {column!r} column is expected)")
        header = [h.strip().lstrip("\ufeff") for h in header]
        if column not in header:
            raise InputError(f"{path} has no column {column!r} (columns: {', '.join(header)}); "
                             f"name it as {path}:COLUMN")
        i = header.index(column)
        for row in reader:
            value = row[i].strip() if i < len(row) else ""
            if value:
                yield InputItem(value)
            elif any(cell.strip() for cell in row):
                yield InputItem(f"{path}:{column}", "empty path value in the table")
