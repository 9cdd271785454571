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

Walks never follow symbolic links to directories (like ``find``; ``sub/up -> ..`` would
otherwise repeat the tree without end), including ``**`` globs; a file symbolic link is listed
even when broken or looping, so the reader gives it its error row.  Special files with an image
suffix (FIFOs, devices) are listed too and refused by the reader without being opened.

Paths are yielded as valid UTF-8 text (results are Parquet strings): a file name with bytes that
are not UTF-8 is shown with ``\\xNN`` escapes (:func:`display_path`), and :func:`fs_path` turns
such a string back into the name on disk.
"""
from __future__ import annotations

import csv
import fnmatch
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .decode import DOCUMENT_SUFFIXES

__all__ = ["InputError", "InputItem", "SUPPORTED_SUFFIXES", "count_inputs", "display_path", "expand_inputs", "fs_path",
           "source_and_text", "walk_files"]

SUPPORTED_SUFFIXES = DOCUMENT_SUFFIXES  # encoders.decode: the one list for every reader
TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")
DEFAULT_COLUMN = "path"
_GLOB_CHARS = set("*?[")
_BYTE_ESCAPE = re.compile(rb"\\x([89a-f][0-9a-f])")  # what backslashreplace makes of a non-UTF-8 byte


class InputError(ValueError):
    """An input specification that cannot be read (a list file, a table column, a glob)."""


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


def display_path(path: str) -> str:
    """``path`` as valid UTF-8 text: bytes of a file name that are not UTF-8 (which Python holds
    as surrogate escapes) are shown as ``\\xNN``, as ``os.fsencode(p).decode("utf-8", "backslashreplace")``."""
    if path.isascii():
        return path
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def source_and_text(path: str) -> tuple[str, str]:
    """(the file to read, the path as shown) for an input path: inputs arrive as text (non-UTF-8 bytes
    of a name shown as ``\\xNN``); read the file that text names, report the text.  A raw name (with
    surrogate escapes) is read as it is and shown the same way."""
    text = display_path(path)
    return (path if text != path else fs_path(path)), text


def fs_path(path: str) -> str:
    """The path on disk that a :func:`display_path` string names.

    A path that exists as written is itself; otherwise its ``\\xNN`` escapes are turned back into
    bytes when that gives a name :func:`display_path` shows as ``path``.  (Expansion refuses the
    rare name this cannot tell apart from another; see :func:`_item`.)
    """
    if "\\x" not in path:
        return path
    try:
        if os.path.lexists(path):
            return path
        raw = _BYTE_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), path.encode("utf-8"))
    except (ValueError, UnicodeEncodeError):
        return path
    candidate = os.fsdecode(raw)
    return candidate if display_path(candidate) == path else path


def _item(path: str, problem: str | None = None) -> InputItem:
    shown = display_path(path)
    if shown != path and problem is None and fs_path(shown) != path:
        problem = (f"file name is not valid UTF-8 and, shown as {shown}, cannot be told apart from another "
                   "file's name; rename it")
    return InputItem(shown, problem)


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
        for path, problem in walk_files(spec):
            found = True
            yield _item(path, problem)
        if not found:
            yield _item(spec, f"directory has no supported files ({' '.join(SUPPORTED_SUFFIXES)})")
        return
    if p.is_file():
        if p.suffix.lower() == ".txt":
            yield from _list_file(spec)
        else:
            yield _item(spec)
        return
    if _GLOB_CHARS & set(spec):
        matches = _glob(spec)
        if not matches:
            yield _item(spec, "pattern matched no files")
        for m in matches:
            yield _item(m)
        return
    yield _item(spec)  # missing, broken link, FIFO...: the reader reports why for this row


def _scan_sorted(path: str) -> tuple[Iterator[os.DirEntry], str | None]:
    try:
        with os.scandir(path or ".") as it:
            return iter(sorted(it, key=lambda e: e.name)), None
    except OSError as exc:
        return iter(()), f"cannot list directory ({exc.strerror or exc})"


def walk_files(root: str, suffixes: tuple[str, ...] | None = SUPPORTED_SUFFIXES, hidden: bool = False
               ) -> Iterator[tuple[str, str | None]]:
    """``(path, problem)`` for the files under ``root`` with one of ``suffixes`` (None: any),
    depth first, entries sorted by name; hidden entries skipped unless ``hidden``.

    Symbolic links to directories are not followed (no cycles, no duplicates); any other entry
    that is not a directory is listed, broken or looping symbolic links and FIFOs included, so
    its reader reports it.  A directory that cannot be listed is one item with a ``problem``.
    Lazy and iterative: memory is one directory listing per level, and no tree is too deep.
    """
    top, problem = _scan_sorted(root)
    if problem is not None:
        yield root, problem
        return
    stack = [(root, top)]
    while stack:
        base, entries = stack[-1]
        e = next(entries, None)
        if e is None:
            stack.pop()
            continue
        if e.name.startswith(".") and not hidden:
            continue
        path = os.path.join(base, e.name)
        try:
            is_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            sub, problem = _scan_sorted(path)
            if problem is not None:
                yield path, problem
            stack.append((path, sub))
            continue
        if suffixes is not None and os.path.splitext(e.name)[1].lower() not in suffixes:
            continue
        try:
            if e.is_symlink() and os.path.isdir(path):
                continue  # a directory symbolic link: not followed
        except OSError:
            pass  # the reader gives this path its error row
        yield path, None


def _glob(pattern: str) -> list[str]:
    """Sorted non-directory matches of ``pattern`` (``**`` without following directory links)."""
    parts = pattern.split(os.sep)
    if "**" not in parts:  # no recursion: each wildcard component goes one level down
        return sorted(m for m in glob.iglob(pattern) if not os.path.isdir(m))
    k = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    base = os.sep.join(parts[:k]) or (os.sep if pattern.startswith(os.sep) else "")
    rest = parts[k:]
    hidden = any(part.startswith(".") for part in rest)
    out = []
    for path, problem in walk_files(base, None, hidden=hidden):
        if problem is None and _match(os.path.relpath(path, base or ".").split(os.sep), rest):
            out.append(path)
    return sorted(out)


def _match(names: list[str], pats: list[str]) -> bool:
    """glob's rules for path components: ``**`` spans zero or more non-hidden directories; a
    hidden name matches only a pattern that starts with a dot."""
    ok = [True] + [False] * len(names)  # ok[j]: names[:j] matched by the patterns so far
    for pat in pats:
        new = [False] * (len(names) + 1)
        for j in range(len(names) + 1):
            if pat == "**":
                new[j] = ok[j] or (j > 0 and new[j - 1] and not names[j - 1].startswith("."))
            elif j > 0 and ok[j - 1]:
                name = names[j - 1]
                new[j] = fnmatch.fnmatchcase(name, pat) and (pat.startswith(".") or not name.startswith("."))
        ok = new
    return ok[-1]


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
