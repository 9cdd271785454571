"""Crash-safe, resumable storage of bulk results: numbered Parquet parts, then one merged file.

Why parts: a job over millions of scans runs for hours and will be interrupted.  Results are
written as ``OUT.parts/part-00000.parquet``, ``part-00001.parquet``... each to a temporary
name, fsync'ed and renamed when complete, and only then listed in ``OUT.parts/progress.json``
(itself replaced atomically).  The progress file is the commit point: a part not listed there
is an orphan from a kill and is deleted on resume, so a crash loses at most the rows not yet in
a committed part (bounded by ``part_rows`` rows and ``part_seconds`` seconds), and rows already
committed are never rewritten.

Parts always end at an input-file boundary (all pages of a file are in one part), so resume
means "skip the first ``files_done`` inputs".  To make sure those are the same inputs, the
progress file records a SHA-256 over the input paths written so far; the job re-hashes the
first ``files_done`` inputs on resume and refuses if they differ.  It also refuses when the
model, gallery generation, threshold, top-k or feature setting differ, naming which.

When every input is done the parts are merged, streaming, into ``OUT`` (temporary name, fsync,
rename) with the run's metadata in the Parquet key-value metadata, and ``OUT.parts`` is removed.
"""
from __future__ import annotations

import datetime as dt
import glob
import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from encoders.runtime import file_sha256
from indexer.atomic import TMP_PREFIX, atomic_write, atomic_write_json

from .bulk_batch import SEQ
from .errors import BulkError, ResumeRefusedError
from encoders.inputs import InputItem, expand_inputs

# What a parts directory of ours may hold: the progress file, parts, temporary files of atomic writes.
_OWN_PART_FILE = re.compile(r"^(progress\.json|part-\d{5,}\.parquet|\.tmp-.*)$")

__all__ = ["BulkError", "PartStore", "ResumeRefusedError", "Tally", "hash_path", "identity_differences", "inputs_digest",
           "path_hasher"]

PROGRESS = "progress.json"
PROGRESS_VERSION = 1
PART_ROWS = 2048
PART_SECONDS = 30.0
MERGE_ROW_GROUP = 32768
COMPRESSION = "zstd"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _refuse_foreign(pdir: Path) -> None:
    """A parts directory holds only files this tool writes; anything else means it is not ours."""
    if not pdir.is_dir():
        raise BulkError(f"{pdir} exists and is not a directory; choose another output path")
    foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in pdir.iterdir()
                     if not (_OWN_PART_FILE.match(p.name) and p.is_file()))
    if foreign:
        raise BulkError(f"{pdir} holds files docretriever did not write ({', '.join(foreign[:5])}"
                        f"{' ...' if len(foreign) > 5 else ''}); it is left untouched: move them, or choose another "
                        "output path")


def path_hasher() -> "hashlib._Hash":
    """The running hash over input paths (``path + "\\n"`` each, in input order)."""
    return hashlib.sha256(b"docretriever-bulk-inputs-v1\n")


def hash_path(hasher: "hashlib._Hash", path: str) -> None:
    """Add one input path to a running :func:`path_hasher` (the only place paths are hashed)."""
    hasher.update(path.encode("utf-8", "surrogateescape") + b"\n")


def inputs_digest(specs: Sequence[str]) -> tuple[int, str]:
    """(number of inputs, path hash) of every input the specs name: what a finished run recorded."""
    hasher = path_hasher()
    n = 0
    for item in expand_inputs(specs):
        hash_path(hasher, item.path)
        n += 1
    return n, hasher.hexdigest()


def parts_dir_for(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def identity_differences(old: dict[str, Any], new: dict[str, Any], then: str = "interrupted run") -> list[str]:
    """Human descriptions of what differs between two run identities (empty: same run);
    ``then`` names the old run in the messages."""
    diffs = []
    if old.get("inputs") != new.get("inputs"):
        diffs.append(f"the inputs differ ({then}: {_short(old.get('inputs'))}; now: {_short(new.get('inputs'))})")
    om, nm = old.get("model") or {}, new.get("model") or {}
    if om.get("fingerprint") != nm.get("fingerprint"):
        diffs.append(f"the model differs ({then}: {om.get('name')} {str(om.get('fingerprint'))[:12]}; "
                     f"now: {nm.get('name')} {str(nm.get('fingerprint'))[:12]})")
    og, ng = old.get("gallery") or {}, new.get("gallery") or {}
    if og.get("path") != ng.get("path"):
        diffs.append(f"the gallery differs ({then}: {og.get('path')}; now: {ng.get('path')})")
    elif og.get("generation") != ng.get("generation"):
        diffs.append(f"the gallery generation differs ({then}: generation {og.get('generation')}; "
                     f"now: generation {ng.get('generation')}; the gallery changed since)")
    for key, what in (("kind", "kind of job (run or embed)"), ("threshold", "threshold"), ("rule", "decision rule"),
                      ("top_k", "top-k"), ("labels", "label filter"), ("search_params", "search parameters"), ("with_features", "feature column setting"),
                      ("schema_version", "output schema version")):
        if old.get(key) != new.get(key):
            diffs.append(f"the {what} differs ({then}: {old.get(key)}; now: {new.get(key)})")
    return diffs


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def tally_columns(schema: pa.Schema) -> list[str]:
    """The columns :class:`Tally` reads, of those ``schema`` has."""
    return [c for c in ("label", "accepted", "error") if c in schema.names]


class Tally:
    """Counts for the summary: rows, errors, accepted rows per label, rejected rows."""

    def __init__(self) -> None:
        self.rows = 0
        self.errors = 0
        self.accepted = 0
        self.rejected = 0
        self.labels: Counter[str] = Counter()

    def add(self, table: pa.Table) -> None:
        """Count a results table; an embedding table (no decision columns) counts vectors as rejected-free rows."""
        self.rows += table.num_rows
        err = table.column("error").to_pylist()
        if "accepted" not in table.column_names:
            self.errors += sum(e is not None for e in err)
            return
        acc = table.column("accepted").to_pylist()
        lab = table.column("label").to_pylist()
        for e, a, label in zip(err, acc, lab):
            if e is not None:
                self.errors += 1
            elif a:
                self.accepted += 1
                self.labels[label] += 1
            else:
                self.rejected += 1


class PartStore:
    """Parts + progress file of one output; see the module doc for the protocol."""

    def __init__(self, out: Path, identity: dict[str, Any], schema: pa.Schema, progress: dict[str, Any],
                 part_rows: int | None = None, part_seconds: float | None = None) -> None:
        self.out = out
        self.dir = parts_dir_for(out)
        self.identity = identity
        self.schema = schema  # without the internal _seq column; carries the run metadata
        self.on_rows: Any = None  # callable(table) for every appended table, in input order
        self.progress = progress
        self.part_rows = max(1, int(part_rows or PART_ROWS))
        self.part_seconds = float(PART_SECONDS if part_seconds is None else part_seconds)
        self.tally = Tally()
        self.notes: list[str] = []  # what opening repaired (damaged parts dropped), for the summary
        self._buf: list[pa.Table] = []
        self._buf_rows = 0
        self._last_flush = time.monotonic()
        self._hasher = path_hasher()
        self._last_seq = int(progress["files_done"]) - 1

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, out: str | os.PathLike, identity: dict[str, Any], schema: pa.Schema, resume: bool = True,
             overwrite: bool = False, part_rows: int | None = None, part_seconds: float | None = None
             ) -> "PartStore":
        """Start a new parts directory, or reopen an interrupted one (``resume``) after checking it."""
        out = Path(out)
        pdir = parts_dir_for(out)
        if pdir.exists():
            _refuse_foreign(pdir)
        if overwrite and pdir.exists():
            shutil.rmtree(pdir)
        ppath = pdir / PROGRESS
        if ppath.is_file():
            try:
                progress = json.loads(ppath.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise BulkError(f"{ppath}: unreadable progress file ({exc}); rerun with --overwrite to start again") \
                    from None
            if not resume:
                raise ResumeRefusedError(f"{out}: an interrupted run exists ({pdir}, {progress.get('files_done')} inputs "
                                         "done); resume it, or rerun with --overwrite to start again")
            diffs = identity_differences(progress.get("identity") or {}, identity)
            if diffs:
                raise ResumeRefusedError(f"cannot resume {out}: " + "; ".join(diffs) +
                                         ". Rerun with --overwrite to start again, or choose another output path")
            store = cls(out, identity, schema, progress, part_rows, part_seconds)
            store._clean_orphans()
            store._drop_damaged_parts()
            store._retally()
            return store
        if pdir.exists() and any(pdir.iterdir()):
            raise BulkError(f"{pdir} exists but holds no progress file; remove it or rerun with --overwrite")
        pdir.mkdir(parents=True, exist_ok=True)
        progress = {"version": PROGRESS_VERSION, "identity": identity, "parts": [], "files_done": 0, "rows_done": 0,
                    "inputs_sha256": path_hasher().hexdigest(), "started_at": now_iso(), "updated_at": now_iso()}
        atomic_write_json(pdir / PROGRESS, progress)
        return cls(out, identity, schema, progress, part_rows, part_seconds)

    @property
    def files_done(self) -> int:
        return int(self.progress["files_done"])

    @property
    def rows_done(self) -> int:
        return int(self.progress["rows_done"])

    @property
    def inputs_sha256(self) -> str:
        return str(self.progress["inputs_sha256"])

    def remaining(self, specs: Sequence[str]) -> Iterator[tuple[int, InputItem]]:
        """The inputs still to do, numbered from ``files_done``: the done ones are skipped after checking
        they are the very paths the interrupted run did (their hash is in the progress file)."""
        hasher = path_hasher()
        it = expand_inputs(specs)
        skip = self.files_done
        for i in range(skip):
            item = next(it, None)
            if item is None:
                raise ResumeRefusedError(
                    f"cannot resume {self.out}: the interrupted run had done {skip} inputs, but the inputs now name "
                    f"only {i}; rerun with --overwrite to start again")
            hash_path(hasher, item.path)
        if hasher.hexdigest() != self.inputs_sha256:
            raise ResumeRefusedError(
                f"cannot resume {self.out}: the first {skip} inputs are not the paths the interrupted run classified "
                "(files added, removed or renamed among them?); rerun with --overwrite to start again")
        self._hasher = hasher
        return ((seq, item) for seq, item in enumerate(it, start=skip))

    def _clean_orphans(self) -> None:
        listed = {p["file"] for p in self.progress["parts"]}
        for p in self.dir.iterdir():
            if p.name != PROGRESS and p.name not in listed:
                p.unlink()  # _refuse_foreign made sure every entry is a file of ours
        missing = [f for f in sorted(listed) if not (self.dir / f).is_file()]
        if missing:
            raise BulkError(f"{self.dir}: committed parts are missing ({', '.join(missing[:5])}); the partial "
                            "results are damaged: rerun with --overwrite to start again")

    def _drop_damaged_parts(self) -> None:
        """A committed part that is unreadable or changed (disk error, tampering) and every part after it
        are redone: progress goes back to the last good part (each part records its SHA-256 and the input
        hash at its end).  Parts written by an older version carry no record: damage there is an error."""
        parts = self.progress["parts"]
        for i, part in enumerate(parts):
            path = self.dir / part["file"]
            try:
                if part.get("sha256") and file_sha256(path) != part["sha256"]:
                    raise ValueError("its SHA-256 differs from the one recorded when it was written")
                pq.read_metadata(path)
            except (OSError, ValueError, pa.ArrowException) as exc:
                if any("inputs_sha256" not in p for p in parts[:i]) or (i and "files_end" not in parts[i - 1]):
                    raise BulkError(f"{path}: committed results part is damaged ({exc}); rerun with --overwrite to "
                                    "start again") from None
                good = parts[:i]
                progress = dict(self.progress)
                progress["parts"] = good
                progress["files_done"] = int(good[-1]["files_end"]) if good else 0
                progress["rows_done"] = sum(int(p["rows"]) for p in good)
                progress["inputs_sha256"] = good[-1]["inputs_sha256"] if good else path_hasher().hexdigest()
                progress["updated_at"] = now_iso()
                atomic_write_json(self.dir / PROGRESS, progress)
                for p in parts[i:]:
                    (self.dir / p["file"]).unlink(missing_ok=True)
                self.progress = progress
                self._last_seq = int(progress["files_done"]) - 1
                self.notes.append(f"{path.name} was damaged ({exc}); redoing inputs from {progress['files_done']} on "
                                  f"({len(parts) - i} part(s) dropped)")
                return

    def _retally(self) -> None:
        for part in self.progress["parts"]:
            self.tally.add(pq.read_table(self.dir / part["file"], columns=tally_columns(self.schema)))

    # ------------------------------------------------------------------ writing
    def append(self, table: pa.Table, complete: bool = True) -> None:
        """Buffer rows (with the internal ``_seq`` column), in input order.

        ``complete``: the table ends on an input-file boundary (the local engine's batches do);
        otherwise the last input's rows are held back until rows of a later input arrive.
        """
        if table.num_rows == 0:
            return
        if self.on_rows is not None:  # e.g. `-o -`: rows streamed as they come, in input order
            self.on_rows(table.drop_columns([SEQ]))
        self._buf.append(table)
        self._buf_rows += table.num_rows
        due = self._buf_rows >= self.part_rows or time.monotonic() - self._last_flush >= self.part_seconds
        if due:
            self._flush(complete)

    def finish(self, complete: bool = True) -> None:
        """Commit buffered rows: all of them when every input is processed (``complete``), else
        only up to the last input-file boundary (an interrupted run)."""
        self._flush(complete=complete)

    def _flush(self, complete: bool) -> None:
        if not self._buf:
            return
        table = pa.concat_tables(self._buf) if len(self._buf) > 1 else self._buf[0]
        seqs = table.column(SEQ).to_numpy()
        cut = table.num_rows
        if not complete:
            last = seqs[-1]
            cut = int((seqs != last).nonzero()[0][-1]) + 1 if (seqs != last).any() else 0
            if cut == 0:
                return  # one input so far (many pages): wait for more
        head, rest = table.slice(0, cut), table.slice(cut)
        self._commit(head)
        self._buf = [rest] if rest.num_rows else []
        self._buf_rows = rest.num_rows
        self._last_flush = time.monotonic()

    def _commit(self, table: pa.Table) -> None:
        """Write one part, then the progress file naming it; in-memory state changes only after
        both writes, so an interruption in between can be retried (or resumed) safely."""
        seqs = table.column(SEQ).to_numpy()
        paths = table.column("path").to_pylist()
        hasher = self._hasher.copy()
        expected = self._last_seq
        for i in range(len(seqs)):
            s = int(seqs[i])
            if s == expected:
                continue
            if s != expected + 1:
                raise BulkError(f"internal error: results out of order (input {s} after input {expected})")
            hash_path(hasher, paths[i])
            expected = s
        data = table.drop_columns([SEQ]).cast(self.schema)
        name = f"part-{len(self.progress['parts']):05d}.parquet"
        atomic_write(self.dir / name, lambda fh: pq.write_table(data, fh, compression=COMPRESSION), sync_dir=True)
        progress = dict(self.progress)
        progress["parts"] = self.progress["parts"] + [{"file": name, "rows": data.num_rows, "files_end": expected + 1,
                                                       "sha256": file_sha256(self.dir / name),
                                                       "inputs_sha256": hasher.hexdigest()}]
        progress["files_done"] = expected + 1
        progress["rows_done"] = self.rows_done + data.num_rows
        progress["inputs_sha256"] = hasher.hexdigest()
        progress["updated_at"] = now_iso()
        atomic_write_json(self.dir / PROGRESS, progress)
        self.progress = progress
        self._hasher = hasher
        self._last_seq = expected
        self.tally.add(data)

    # ------------------------------------------------------------------ merging
    def merge(self, extra_metadata: dict[str, Any]) -> Path:
        """Stream all parts into ``OUT`` (atomic) with the run metadata, then remove the parts."""
        if self._buf:
            raise BulkError("internal error: merge with uncommitted rows")
        from .bulk_meta import with_run_metadata

        schema = with_run_metadata(self.schema, extra_metadata)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.out.parent.glob(f"{TMP_PREFIX}{glob.escape(self.out.name)}.*"):
            stale.unlink(missing_ok=True)  # a merge killed half-way left it: nobody else writes this name

        def write(fh: Any) -> None:
            with pq.ParquetWriter(fh, schema, compression=COMPRESSION) as writer:
                pending: list[pa.Table] = []
                n = 0
                for part in self.progress["parts"]:
                    t = pq.read_table(self.dir / part["file"]).cast(schema)
                    pending.append(t)
                    n += t.num_rows
                    if n >= MERGE_ROW_GROUP:
                        writer.write_table(pa.concat_tables(pending), row_group_size=MERGE_ROW_GROUP)
                        pending, n = [], 0
                if pending:
                    writer.write_table(pa.concat_tables(pending), row_group_size=MERGE_ROW_GROUP)

        atomic_write(self.out, write, sync_dir=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.out
