"""The register gallery: a directory holding a FAISS index, an items table and a manifest.

On disk (see the shared brief)::

    GALLERY/manifest.json          commit point, replaced atomically; names the files below
    GALLERY/index-000N.faiss       IndexIDMap2(IndexFlatIP(dim)), ids = item ids
    GALLERY/items-000N.parquet     id, label, source, sha256, added_at, page, note
    GALLERY/.lock                  writers' lock

Why the manifest is the commit point: a write creates *new* generation files (tmp + fsync +
rename), and only then replaces manifest.json.  A writer killed at any moment leaves either the
old manifest (naming old, intact files) or the new one (naming new, complete files).  Readers
only ever open files through the manifest.  The previous manifest is embedded under
``"previous"`` (one atomic file, no second commit point) so :meth:`Gallery.rollback` can restore
it; files referenced by neither are pruned by the next writer.

Ids are int64, increase monotonically and are never reused, even after removal or rollback
(``next_id`` lives in the manifest).  Scores are cosine similarities in [-1, 1] (inner product of
unit vectors).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from . import index as idx
from . import items as items_mod
from .atomic import TMP_PREFIX, atomic_write, atomic_write_bytes, atomic_write_json, crash_point, fsync_dir
from .errors import (EncoderMismatchError, GalleryCorruptError, GalleryError, GalleryLockedError, LabelError,
                     NearDuplicateError, NotAGalleryError, UnknownItemsError)
from .ingest import (Batch, Entry, file_mode_collisions, near_duplicate_pairs_within, read_and_encode,
                     resolve_inputs)
from .labels import LABEL_MODES, check_label, scan_register

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK_FILE = ".lock"
METRIC = "inner_product"
# Two images of *different* document types this similar (cosine) would make both labels
# ambiguous for retrieval; refused unless forced.  Stored per gallery in the manifest.
NEAR_DUPLICATE_BOUND = 0.97
DEFAULT_LOCK_TIMEOUT = 10.0  # seconds a writer waits for another writer before giving up
MAX_LISTED = 50  # problems listed in one error message before "... and N more"
_GEN_FILE = re.compile(r"^(index-\d+\.faiss|items-\d+\.parquet)$")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _clip(lines: list[str]) -> list[str]:
    return lines if len(lines) <= MAX_LISTED else lines[:MAX_LISTED] + [f"... and {len(lines) - MAX_LISTED} more"]


@dataclass
class AddResult:
    """What a build/add did: ids added, inputs skipped (duplicates) and near-duplicates accepted (force)."""

    added_ids: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    near_duplicates: list[str] = field(default_factory=list)
    generation: int = 0

    @property
    def added(self) -> int:
        return len(self.added_ids)


@dataclass
class _State:
    manifest: dict[str, Any]
    index: Any  # faiss.Index
    items: pa.Table
    ids: np.ndarray  # items ids, sorted ascending
    labels: np.ndarray  # object array, aligned with ids

    @classmethod
    def of(cls, manifest: dict[str, Any], index: Any, items: pa.Table) -> "_State":
        items = items.sort_by("id")
        return cls(manifest, index, items, items.column("id").to_numpy().astype(np.int64),
                   np.asarray(items.column("label").to_pylist(), dtype=object))


class Gallery:
    """An opened gallery.  Use :meth:`open` or :meth:`build`; writes go through methods that lock."""

    def __init__(self, path: Path, state: _State, encoder: Any = None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self._s = state
        self.encoder = encoder
        self.lock_timeout = lock_timeout
        self.last_result: AddResult | None = None
        self._lock = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike, encoder: Any = None,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT, strict: bool = True) -> "Gallery":
        """Open a gallery for reading (and writing through its methods).

        With ``encoder``, refuses a gallery built by another model (fingerprints differ).
        ``strict=False`` opens files whose counts disagree (so ``verify`` can list every problem).
        """
        path = Path(path)
        g = cls(path, _load_state(path, strict=strict), encoder, lock_timeout)
        if encoder is not None:
            g._check_encoder(encoder)
        return g

    @classmethod
    def create(cls, out: str | os.PathLike, encoder: Any, label_mode: str = "folder",
               index_spec: str = idx.DEFAULT_SPEC, near_duplicate_bound: float = NEAR_DUPLICATE_BOUND,
               overwrite: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> "Gallery":
        """An empty gallery at ``out`` (generation 1); see :meth:`build` for ``overwrite``."""
        return cls._build_from(out, encoder, None, label_mode, index_spec, near_duplicate_bound, overwrite,
                               lock_timeout, force=False)

    @classmethod
    def build(cls, register_dir: str | os.PathLike, out: str | os.PathLike, encoder: Any,
              label_mode: str = "folder", index_spec: str = idx.DEFAULT_SPEC, force: bool = False,
              overwrite: bool = False, near_duplicate_bound: float = NEAR_DUPLICATE_BOUND,
              lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
              progress: Callable[[int], None] | None = None) -> "Gallery":
        """Encode every image of ``register_dir`` into a new gallery at ``out``.

        ``out`` must not exist, be empty, or (with ``overwrite=True``) be a gallery, which is then
        replaced atomically in place (a new generation; ids continue, never reused).  ``force``
        accepts near-identical images under different labels.  ``g.last_result`` says what happened.
        """
        scan = scan_register(register_dir, label_mode)
        entries = [Entry(p, lab, derived=True) for p, lab in scan.entries]
        return cls._build_from(out, encoder, entries, label_mode, index_spec, near_duplicate_bound, overwrite,
                               lock_timeout, force=force, progress=progress)

    @classmethod
    def _build_from(cls, out: str | os.PathLike, encoder: Any, entries: list[Entry] | None, label_mode: str,
                    index_spec: str, bound: float, overwrite: bool, lock_timeout: float, force: bool,
                    progress: Callable[[int], None] | None = None) -> "Gallery":
        if label_mode not in LABEL_MODES:
            raise GalleryError(f"unknown label mode {label_mode!r}; choose one of {', '.join(LABEL_MODES)}")
        if not -1.0 <= bound <= 1.0:
            raise GalleryError(f"near-duplicate bound is a cosine in [-1, 1], not {bound}")
        out = Path(out)
        idx.make_index(index_spec, encoder.dim)  # fail on a bad spec before encoding anything
        _check_target(out, overwrite)
        batch = read_and_encode(entries, encoder, {}, progress) if entries else Batch(
            feats=np.zeros((0, encoder.dim), dtype=np.float32))
        result = AddResult(skipped=list(batch.skipped))
        pairs = near_duplicate_pairs_within(batch.feats, batch.labels, bound)
        lines = [f"{batch.sources[i]} ({batch.labels[i]!r}) ~ {batch.sources[j]} ({batch.labels[j]!r}): "
                 f"cosine {s:.4f}" for i, j, s in pairs]
        if lines and not force:
            raise NearDuplicateError(_clip(lines), bound)
        result.near_duplicates = lines
        out.mkdir(parents=True, exist_ok=True)
        g = cls(out, _State.of({}, None, items_mod.empty()), encoder, lock_timeout)
        with g._locked():
            _check_target(out, overwrite)  # re-check: another builder may have won the race
            old = _try_read_manifest(out)
            next_id = int(old.get("next_id", 0)) if old else 0
            ids = np.arange(next_id, next_id + len(batch), dtype=np.int64)
            index = idx.make_index(index_spec, encoder.dim)
            if len(batch):
                index.add_with_ids(np.ascontiguousarray(batch.feats), ids)
            table = items_mod.make_rows(ids, batch.labels, batch.sources, batch.sha256)
            now = _now()
            manifest = {
                "format_version": FORMAT_VERSION,
                "encoder": {"name": encoder.name, "fingerprint": encoder.fingerprint, "dim": int(encoder.dim)},
                "metric": METRIC, "index_spec": index_spec, "label_mode": label_mode,
                "created_at": now, "calibration": None, "near_duplicate_bound": float(bound),
                "next_id": next_id,
            }
            g._s = _State.of(old or {}, None, items_mod.empty())
            g._commit(index, table, {}, next_id=next_id + len(batch), base=manifest)
        result.added_ids = ids.tolist()
        result.generation = g.generation
        g.last_result = result
        return g

    def reload(self) -> "Gallery":
        """Re-read the gallery from disk (another process may have committed a new generation)."""
        state = _load_state(self.path)
        self._s = state
        return self

    # ------------------------------------------------------------------ facts
    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the current manifest."""
        return json.loads(json.dumps(self._s.manifest))

    @property
    def items(self) -> pa.Table:
        """The items table (sorted by id)."""
        return self._s.items

    @property
    def index(self) -> Any:
        return self._s.index

    @property
    def calibration(self) -> dict[str, Any] | None:
        cal = self._s.manifest.get("calibration")
        return json.loads(json.dumps(cal)) if cal is not None else None

    @property
    def generation(self) -> int:
        return int(self._s.manifest["generation"])

    @property
    def count(self) -> int:
        return int(self._s.index.ntotal)

    def __len__(self) -> int:
        return self.count

    @property
    def dim(self) -> int:
        return int(self._s.manifest["encoder"]["dim"])

    @property
    def encoder_info(self) -> dict[str, Any]:
        return dict(self._s.manifest["encoder"])

    @property
    def label_mode(self) -> str:
        return str(self._s.manifest.get("label_mode", "folder"))

    @property
    def near_duplicate_bound(self) -> float:
        return float(self._s.manifest.get("near_duplicate_bound", NEAR_DUPLICATE_BOUND))

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def label_counts(self) -> dict[str, int]:
        """Exemplars per label, sorted by label."""
        labels, counts = np.unique(self._s.labels.astype(str), return_counts=True) if self.count else ([], [])
        return {str(lab): int(c) for lab, c in zip(labels, counts)}

    def __repr__(self) -> str:
        return (f"Gallery({str(self.path)!r}, generation={self.generation}, vectors={self.count}, "
                f"labels={self._s.manifest.get('labels')}, encoder={self._s.manifest['encoder']['name']!r})")

    # ------------------------------------------------------------------ reading
    def search(self, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` cosine scores and item ids per query row: ``(n, k')`` float32 and int64.

        ``k' = min(k, count)``; an empty gallery gives ``(n, k)`` ids of -1 with score
        ``index.PAD_SCORE`` (-inf).  Query rows should be L2-normalised by the gallery's encoder.
        """
        q = np.asarray(feats, dtype=np.float32)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2 or q.shape[1] != self.dim:
            shape = "x".join(str(s) for s in q.shape)
            raise GalleryError(
                f"query vectors have shape {shape} but gallery {self.path} holds {self.dim}-d vectors "
                f"(encoder {self._s.manifest['encoder']['name']!r}); encode queries with the gallery's model")
        k = int(k)
        if k < 1:
            raise GalleryError(f"k must be >= 1, not {k}")
        n = len(q)
        if self.count == 0:
            return np.full((n, k), idx.PAD_SCORE, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
        return idx.search(self._s.index, np.ascontiguousarray(q), min(k, self.count))

    def labels_of(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Labels for item ids (any shape); id -1 (padding) gives ""."""
        arr = np.asarray(ids, dtype=np.int64)
        flat = arr.reshape(-1)
        out = np.full(flat.shape, "", dtype=object)
        valid = np.flatnonzero(flat >= 0)
        if valid.size:
            known = self._s.ids
            pos = np.minimum(np.searchsorted(known, flat[valid]), max(known.size - 1, 0))
            found = (known[pos] == flat[valid]) if known.size else np.zeros(valid.size, dtype=bool)
            if not found.all():
                unknown = sorted(set(flat[valid][~found].tolist()))
                raise GalleryError(f"ids not in gallery {self.path}: {unknown[:20]}")
            out[valid] = self._s.labels[pos]
        return out.reshape(arr.shape)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) in items order (ascending id)."""
        ids, vecs = idx.all_vectors(self._s.index)
        order = np.argsort(ids, kind="stable")
        return ids[order], vecs[order]

    def stats(self) -> dict[str, Any]:
        m = self._s.manifest
        sizes = {}
        for key in ("index_file", "items_file"):
            p = self.path / m[key]
            sizes[key] = p.stat().st_size if p.exists() else None
        sizes["manifest"] = (self.path / MANIFEST).stat().st_size
        sizes["directory_total"] = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        return {
            "gallery": str(self.path), "generation": self.generation, "vectors": self.count,
            "labels": len(self.label_counts()), "dim": self.dim, "metric": m.get("metric", METRIC),
            "index_spec": m["index_spec"], "bytes_per_vector": idx.code_bytes_per_vector(self._s.index),
            "encoder": dict(m["encoder"]), "label_mode": self.label_mode, "next_id": int(m.get("next_id", 0)),
            "near_duplicate_bound": self.near_duplicate_bound, "calibrated": m.get("calibration") is not None,
            "created_at": m.get("created_at"), "updated_at": m.get("updated_at"),
            "previous_generation": (m.get("previous") or {}).get("generation"), "sizes": sizes,
        }

    # ------------------------------------------------------------------ writing
    def add(self, paths: Sequence[str | os.PathLike], label: str | None = None, force: bool = False,
            encoder: Any = None, near_duplicate_bound: float | None = None,
            progress: Callable[[int], None] | None = None) -> AddResult:
        """Register images: files (need ``label``) and directories (labels from folders unless ``label``).

        Same bytes already registered (sha256) are skipped; near-identical images under different
        labels (cosine >= ``near_duplicate_bound``, default the gallery's) are refused unless
        ``force``; any unreadable input makes the whole batch add nothing.
        """
        enc = self._encoder_for_write(encoder)
        entries = resolve_inputs(list(paths), label, self.label_mode)
        return self.add_entries(entries, force=force, encoder=enc, near_duplicate_bound=near_duplicate_bound,
                                progress=progress)

    def add_entries(self, entries: Sequence[Entry], force: bool = False, encoder: Any = None,
                    near_duplicate_bound: float | None = None,
                    progress: Callable[[int], None] | None = None) -> AddResult:
        """Register (path, label) entries: the primitive behind :meth:`add`."""
        enc = self._encoder_for_write(encoder)
        if near_duplicate_bound is not None and not -1.0 <= near_duplicate_bound <= 1.0:
            raise GalleryError(f"near-duplicate bound is a cosine in [-1, 1], not {near_duplicate_bound}")
        for e in entries:
            check_label(e.label)
        if self.label_mode == "file":
            collisions = file_mode_collisions(entries)
            if collisions:
                raise LabelError(collisions, "cannot derive labels (file mode)")
        # Encode outside the lock (slow); re-check everything against fresh state under it.
        batch = read_and_encode(entries, enc, self._known_sha(), progress)
        with self._locked():
            self._reload_if_changed()
            self._check_encoder(enc)
            known = self._known_sha()
            keep = [sha not in known for sha in batch.sha256]
            batch.skipped += [f"{src}: same image bytes already registered ({known[sha]}); skipped"
                              for src, sha in zip(batch.sources, batch.sha256) if sha in known]
            batch.keep(keep)
            result = AddResult(skipped=batch.skipped, generation=self.generation)
            if len(batch) == 0:
                self.last_result = result
                return result
            if self.label_mode == "file":
                self._refuse_file_mode_relabel(batch)
            bound = self.near_duplicate_bound if near_duplicate_bound is None else float(near_duplicate_bound)
            lines = self._near_duplicates(batch, bound)
            if lines and not force:
                raise NearDuplicateError(_clip(lines), bound)
            result.near_duplicates = lines
            next_id = int(self._s.manifest.get("next_id", 0))
            if self._s.ids.size:
                next_id = max(next_id, int(self._s.ids.max()) + 1)
            ids = np.arange(next_id, next_id + len(batch), dtype=np.int64)
            index = idx.clone(self._s.index)  # mutate a copy: a failed commit leaves this object intact
            index.add_with_ids(np.ascontiguousarray(batch.feats), ids)
            table = pa.concat_tables([self._s.items, items_mod.make_rows(ids, batch.labels, batch.sources,
                                                                          batch.sha256)])
            self._commit(index, table, {}, next_id=next_id + len(batch))
            result.added_ids = ids.tolist()
            result.generation = self.generation
        self.last_result = result
        return result

    def remove(self, labels: Sequence[str] = (), ids: Sequence[int] = ()) -> list[int]:
        """Remove every item of ``labels`` and the items ``ids``; returns the removed ids.

        Unknown labels or ids raise :class:`UnknownItemsError` and remove nothing.  Removed ids
        are never reused.
        """
        labels = [labels] if isinstance(labels, str) else list(labels)
        want_ids = [int(i) for i in ids]
        if not labels and not want_ids:
            raise GalleryError("nothing to remove: give labels and/or ids")
        with self._locked():
            self._reload_if_changed()
            present_labels = set(self._s.labels.tolist())
            present_ids = set(self._s.ids.tolist())
            unknown = [f"label {lab!r}" for lab in labels if lab not in present_labels]
            unknown += [f"id {i}" for i in want_ids if i not in present_ids]
            if unknown:
                raise UnknownItemsError(_clip(unknown), f"not in gallery {self.path}; nothing was removed")
            mask = np.isin(self._s.labels.astype(str), np.asarray(labels, dtype=str)) if labels else \
                np.zeros(len(self._s.ids), dtype=bool)
            mask |= np.isin(self._s.ids, np.asarray(want_ids, dtype=np.int64))
            gone = self._s.ids[mask]
            index = idx.clone(self._s.index)
            removed = index.remove_ids(np.ascontiguousarray(gone, dtype=np.int64))  # one batched call
            if removed != len(gone):
                raise GalleryCorruptError(f"{self.path}: index held {removed} of the {len(gone)} ids to remove; "
                                          "run `indexer verify`")
            table = self._s.items.filter(pa.array(~mask))
            self._commit(index, table, {})
        return sorted(gone.tolist())

    def set_calibration(self, table: dict[str, Any] | None) -> None:
        """Store a calibration dict (threshold table, source, ...) in the manifest, atomically.

        ``None`` clears it.  The dict must be JSON-serialisable without NaN/inf.
        """
        if table is not None and not isinstance(table, dict):
            raise GalleryError(f"calibration must be a dict or None, not {type(table).__name__}")
        try:
            cal = json.loads(json.dumps(table, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise GalleryError(f"calibration is not JSON-serialisable ({exc})") from None
        with self._locked():
            self._reload_if_changed()
            self._commit(None, None, {"calibration": cal})

    def rollback(self) -> int:
        """Make the previous generation current again (as a new generation); returns it.

        ``next_id`` is kept at its highest value so ids handed out by the rolled-back generation
        are not reused.  Rolling back twice restores the state before the first rollback.
        """
        with self._locked():
            self._reload_if_changed()
            cur = self._s.manifest
            prev = cur.get("previous")
            if not prev:
                raise GalleryError(f"{self.path}: no previous generation to roll back to")
            for key in ("index_file", "items_file"):
                if not (self.path / prev[key]).is_file():
                    raise GalleryCorruptError(f"{self.path}: previous generation file {prev[key]} is missing; "
                                              "cannot roll back")
            index = idx.read_index(self.path / prev["index_file"])
            table = items_mod.read(self.path / prev["items_file"])
            base = {k: v for k, v in prev.items() if k != "previous"}
            self._s = _State.of(cur, index, table)
            next_id = max(int(cur.get("next_id", 0)), int(prev.get("next_id", 0)))
            self._commit(None, None, {}, next_id=next_id, base=base)
        return self.generation

    @classmethod
    def rollback_at(cls, path: str | os.PathLike, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> "Gallery":
        """Roll back the gallery at ``path`` even if its current files are missing or corrupt.

        Only the manifest must be readable; returns the gallery opened at the restored generation.
        """
        path = Path(path)
        g = cls(path, _State.of(_read_manifest(path), None, items_mod.empty()), None, lock_timeout)
        g.rollback()
        return cls.open(path, lock_timeout=lock_timeout)

    # ------------------------------------------------------------------ internals
    def _encoder_for_write(self, encoder: Any) -> Any:
        enc = encoder if encoder is not None else self.encoder
        if enc is None:
            raise GalleryError(f"{self.path}: writing needs an encoder; open the gallery with one "
                               "(Gallery.open(path, encoder)) or pass encoder=")
        self._check_encoder(enc)
        return enc

    def _check_encoder(self, encoder: Any) -> None:
        m = self._s.manifest["encoder"]
        if encoder.fingerprint != m["fingerprint"]:
            raise EncoderMismatchError(str(self.path), m["fingerprint"], m.get("name", "?"),
                                       encoder.fingerprint, encoder.name)
        if int(encoder.dim) != int(m["dim"]):  # same file, different contract: should not happen
            raise GalleryCorruptError(f"{self.path}: manifest says {m['dim']}-d, encoder gives {encoder.dim}-d")

    def _known_sha(self) -> dict[str, str]:
        it = self._s.items
        return {sha: f"id {i}, label {lab!r}, {src}" for sha, i, lab, src in zip(
            it.column("sha256").to_pylist(), it.column("id").to_pylist(), it.column("label").to_pylist(),
            it.column("source").to_pylist())}

    def _refuse_file_mode_relabel(self, batch: Batch) -> None:
        present = {lab: (i, src) for i, lab, src in zip(self._s.ids.tolist(), self._s.labels.tolist(),
                                                        self._s.items.column("source").to_pylist())}
        problems = [f"{src}: label {lab!r} is already in the gallery (id {present[lab][0]}, {present[lab][1]}); "
                    f"file mode keeps one image per label: remove it first (indexer remove {self.path} "
                    f"--label {lab!r}) or give --label"
                    for src, lab, d in zip(batch.sources, batch.labels, batch.derived) if d and lab in present]
        if problems:
            raise LabelError(_clip(problems), "label collisions with the gallery (file mode); nothing was added")

    def _near_duplicates(self, batch: Batch, bound: float) -> list[str]:
        lines = []
        sources = self._s.items.column("source").to_pylist()
        for row, item_id, score in idx.neighbours_above(self._s.index, batch.feats, bound):
            pos = int(np.searchsorted(self._s.ids, item_id))
            if self._s.labels[pos] != batch.labels[row]:
                lines.append(f"{batch.sources[row]} ({batch.labels[row]!r}) ~ id {item_id} {sources[pos]} "
                             f"({self._s.labels[pos]!r}): cosine {score:.4f}")
        for i, j, score in near_duplicate_pairs_within(batch.feats, batch.labels, bound):
            lines.append(f"{batch.sources[i]} ({batch.labels[i]!r}) ~ {batch.sources[j]} ({batch.labels[j]!r}): "
                         f"cosine {score:.4f}")
        return lines

    @contextmanager
    def _locked(self) -> Iterator[None]:
        import filelock

        if self._lock is None:
            self._lock = filelock.FileLock(str(self.lock_path), timeout=self.lock_timeout)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise GalleryLockedError(str(self.lock_path), self.lock_timeout) from None
        try:
            yield
        finally:
            self._lock.release()

    def _reload_if_changed(self) -> None:
        disk = _read_manifest(self.path)
        if disk != self._s.manifest:
            self._s = _load_state(self.path)

    def _commit(self, index: Any, table: pa.Table | None, changes: dict[str, Any], next_id: int | None = None,
                base: dict[str, Any] | None = None) -> None:
        """Write a new generation and switch the manifest to it.  Caller holds the lock."""
        old = self._s.manifest
        gen = int(old.get("generation", 0)) + 1
        new = {k: v for k, v in (base if base is not None else old).items() if k != "previous"}
        new.update(changes)
        if index is not None:
            new["index_file"] = f"index-{gen:04d}.faiss"
            atomic_write_bytes(self.path / new["index_file"], idx.serialize(index), sync_dir=False)
            crash_point("after-index-write")
        else:
            index = self._s.index
        if table is not None:
            new["items_file"] = f"items-{gen:04d}.parquet"
            table = table.sort_by("id")
            atomic_write(self.path / new["items_file"], lambda fh: items_mod.write(table, fh), sync_dir=False)
            crash_point("after-items-write")
        else:
            table = self._s.items
        labels = table.column("label").to_pylist()
        new.update({"generation": gen, "count": int(index.ntotal), "labels": len(set(labels)),
                    "updated_at": _now(), "format_version": FORMAT_VERSION})
        new["next_id"] = int(next_id if next_id is not None else old.get("next_id", 0))
        new["previous"] = {k: v for k, v in old.items() if k != "previous"} if old.get("generation") else None
        fsync_dir(self.path)  # new generation files durable before the manifest points at them
        crash_point("before-manifest-write")
        atomic_write_json(self.path / MANIFEST, new)
        crash_point("after-manifest-write")
        self._s = _State.of(new, index, table)
        self._prune()

    def _prune(self) -> None:
        """Delete generation files referenced by neither the current nor the previous manifest."""
        keep = {MANIFEST, LOCK_FILE}
        for m in (self._s.manifest, self._s.manifest.get("previous") or {}):
            keep.update(m[k] for k in ("index_file", "items_file") if k in m)
        for p in self.path.iterdir():
            if p.name in keep or not p.is_file():
                continue
            if _GEN_FILE.match(p.name) or p.name.startswith(TMP_PREFIX):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass


# ---------------------------------------------------------------------- loading helpers
def _read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / MANIFEST
    if not path.is_dir():
        raise NotAGalleryError(f"gallery not found: {path} is not a directory (create one with `indexer build`)")
    try:
        text = mpath.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotAGalleryError(f"not a gallery: {mpath} does not exist (create one with `indexer build`)") from None
    try:
        m = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GalleryCorruptError(f"{mpath}: not valid JSON ({exc})") from None
    if not isinstance(m, dict) or "format_version" not in m:
        raise GalleryCorruptError(f"{mpath}: not a docretriever gallery manifest (no format_version)")
    if int(m["format_version"]) > FORMAT_VERSION:
        raise GalleryError(f"{mpath}: gallery format {m['format_version']} is newer than this docretriever "
                           f"understands ({FORMAT_VERSION}); upgrade docretriever")
    missing = [k for k in ("generation", "index_file", "items_file", "encoder", "index_spec") if k not in m]
    if missing:
        raise GalleryCorruptError(f"{mpath}: manifest lacks {missing}")
    return m


def _try_read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return _read_manifest(path)
    except GalleryError:
        return None


def _load_state(path: Path, attempts: int = 5, strict: bool = True) -> _State:
    """Manifest, then the files it names; retried if a writer pruned them between the two reads."""
    last: Exception | None = None
    for _ in range(attempts):
        m = _read_manifest(path)
        try:
            index = idx.read_index(path / m["index_file"])
            table = items_mod.read(path / m["items_file"])
        except FileNotFoundError as exc:
            last = exc
            if _read_manifest(path).get("generation") != m.get("generation"):
                continue  # a writer moved on meanwhile: read the newer manifest
            break
        except Exception as exc:  # faiss raises RuntimeError, pyarrow ArrowInvalid, ...
            raise GalleryCorruptError(f"{path}: cannot read generation {m['generation']} files "
                                      f"({type(exc).__name__}: {exc}); try `indexer rollback {path}`") from None
        if strict and (index.ntotal != len(table) or index.ntotal != int(m.get("count", index.ntotal))):
            raise GalleryCorruptError(
                f"{path}: {m['index_file']} holds {index.ntotal} vectors, {m['items_file']} {len(table)} rows, "
                f"manifest says {m.get('count')}; try `indexer rollback {path}`")
        if strict and index.d != int(m["encoder"]["dim"]):
            raise GalleryCorruptError(f"{path}: {m['index_file']} is {index.d}-d, manifest says "
                                      f"{m['encoder']['dim']}-d")
        return _State.of(m, index, table)
    name = getattr(last, "filename", None) or str(last)
    raise GalleryCorruptError(f"{path}: file named by the manifest is missing: {name}; "
                              f"try `indexer rollback {path}`")


_OWN_FILE = re.compile(r"^(manifest\.json|\.lock|index-\d+\.faiss|items-\d+\.parquet|\.tmp-.*)$")


def _check_target(out: Path, overwrite: bool) -> None:
    """Build may write into a missing/empty dir, a half-built one of ours, or (overwrite) a gallery."""
    if not out.exists():
        return
    if not out.is_dir():
        raise GalleryError(f"cannot build gallery at {out}: it exists and is not a directory")
    names = [p.name for p in out.iterdir()]
    foreign = sorted(n for n in names if not _OWN_FILE.match(n))
    if foreign:
        raise GalleryError(f"cannot build gallery at {out}: the directory holds other files "
                           f"({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}); choose an empty "
                           "or new directory")
    if MANIFEST in names and not overwrite:
        raise GalleryError(f"{out} is already a gallery; extend it with `indexer add`, or rebuild it in place "
                           "with --overwrite")
