"""Generations: the lock, the commit that makes a new generation current, pruning, rollback.

Why a module of its own: every write of a gallery ends here, and the guarantees live here.  A write
creates *new* generation files (temporary file, fsync, rename), records their SHA-256, and only then
replaces ``manifest.json`` (the commit point); the previous manifest is embedded so a rollback can
restore it; files referenced by neither are pruned by the next writer.  Writers take ``GALLERY/.lock``.
Readers of one generation's state (search, labels) are here too, so the self-calibration can measure
a generation before it is committed.
"""
from __future__ import annotations

import datetime as dt
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pyarrow as pa

from encoders import pageprint

from . import index as idx
from . import items as items_mod
from . import specs
from .atomic import TMP_PREFIX, atomic_write, atomic_write_json, crash_point, fsync_dir
from .errors import GalleryCorruptError, GalleryError, GalleryLockedError
from .exact import ExactStore, LocalStore, PagePrintStore
from .integrity import Integrity, checksums_for
from .rerank import rerank_top, verify_top
from .state import (_GEN_FILE, FORMAT_VERSION, MANIFEST, State as _State, generation_files as _generation_files,
                    load_state as _load_state, open_exact as _open_exact, open_local as _open_local,
                    open_pages as _open_pages,
                    read_manifest as _read_manifest)

if TYPE_CHECKING:
    from . import selfcal
    from .gallery import AddResult, Gallery

LOCK_FILE = ".lock"
DEFAULT_LOCK_TIMEOUT = 10.0  # seconds a writer waits for another writer before giving up


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class GenerationsMixin:
    """Locking, committing and rolling back generations (mixed into :class:`indexer.gallery.Gallery`)."""

    path: Path
    _s: _State
    _lock: Any
    lock_timeout: float

    def integrity_problems(self, wait: bool = True) -> list[str]:
        """Files whose SHA-256 differs from the manifest's record (waits for the background check of
        memory-mapped files unless ``wait=False``); a gallery opened ``strict`` refuses to answer then."""
        integ = self._s.integrity
        if integ is None:
            return []
        if wait:
            integ.wait()
        return list(integ.problems)

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

    def _reload_if_changed(self, for_write: bool = False) -> None:
        disk = _read_manifest(self.path)
        if disk != self._s.manifest:
            self._s = _load_state(self.path, mmap=False if for_write else self._mmap)

    def _writable(self) -> None:
        """Fresh state whose index may be changed: never a memory-mapped one (see Gallery.index)."""
        self._reload_if_changed(for_write=True)
        if self._s.mapped:
            self._s = _load_state(self.path, mmap=False)

    def _commit(self, index: Any, table: pa.Table | None, changes: dict[str, Any], next_id: int | None = None,
                base: dict[str, Any] | None = None, exact: ExactStore | None | str = "keep",
                probes: selfcal.Probes | None = None, result: AddResult | None = None,
                local: LocalStore | None | str = "keep", pages: PagePrintStore | None | str = "keep") -> None:
        """Write a new generation and switch the manifest to it.  Caller holds the lock.

        ``exact``: the exact store the new manifest names (its segment files already written);
        "keep" = the current one, or, with ``base``, the one ``base`` names.  A write that changes
        the index or the items re-measures the self-calibration (when the gallery has it) with the
        stored probes of live exemplars plus ``probes``, against the new generation.
        """
        old = self._s.manifest
        gen = int(old.get("generation", 0)) + 1
        new = {k: v for k, v in (base if base is not None else old).items() if k != "previous"}
        new.update(changes)
        mapped = False
        if index is not None:
            new["index_file"] = f"index-{gen:04d}.faiss"
            idx.write_index(index, self.path / new["index_file"])
            crash_point("after-index-write")
        else:
            index = self._s.index
            mapped = self._s.mapped
        if table is not None:
            new["items_file"] = f"items-{gen:04d}.parquet"
            table = table.sort_by("id")
            atomic_write(self.path / new["items_file"], lambda fh: items_mod.write(table, fh), sync_dir=False)
            crash_point("after-items-write")
        else:
            table = self._s.items
        if isinstance(exact, str):
            exact = _open_exact(self.path, new) if base is not None else self._s.exact
        if isinstance(local, str):
            local = _open_local(self.path, new) if base is not None else self._s.local
        if isinstance(pages, str):
            pages = _open_pages(self.path, new) if base is not None else self._s.pages
        labels = table.column("label").to_pylist()
        plan = specs.Plan.from_dict(new.get("index"))
        tombstones = int(index.ntotal) - len(table)
        plain = plan.type == "flat" and not new.get("exact") and not new.get("local") and not new.get("pages") \
            and tombstones == 0
        new.update({"generation": gen, "count": len(table), "labels": len(set(labels)), "tombstones": tombstones,
                    "updated_at": _now(), "format_version": 1 if plain else FORMAT_VERSION})
        new["next_id"] = int(next_id if next_id is not None else old.get("next_id", 0))
        new["previous"] = {k: v for k, v in old.items() if k != "previous"} if old.get("generation") else None
        state = _State.of(new, index, table, exact, mapped, local, pages)
        if (new.get("self_calibration") or {}).get("enabled") and (probes is not None or index is not self._s.index
                                                                   or table is not self._s.items):
            new["self_calibration"] = self._remeasure(state, gen, new["self_calibration"], probes, result)
        known = {**((base or {}).get("checksums") or {}), **(old.get("checksums") or {})}
        new["checksums"] = checksums_for(self.path, _generation_files(new), known)
        fsync_dir(self.path)  # new generation files durable before the manifest points at them
        crash_point("before-manifest-write")
        atomic_write_json(self.path / MANIFEST, new)
        crash_point("after-manifest-write")
        self._s = state
        self._prune()

    def _prune(self) -> None:
        """Delete generation files referenced by neither the current nor the previous manifest."""
        keep = {MANIFEST, LOCK_FILE}
        for m in (self._s.manifest, self._s.manifest.get("previous") or {}):
            keep.update(_generation_files(m))
        for p in self.path.iterdir():
            if p.name in keep or not p.is_file():
                continue
            if _GEN_FILE.match(p.name) or p.name.startswith(TMP_PREFIX):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass

    def _next_generation(self) -> int:
        return int(self._s.manifest.get("generation", 0)) + 1

    # ------------------------------------------------------------------ internals

    def rollback(self) -> int:
        """Make the previous generation current again (as a new generation); returns it.

        ``next_id`` is kept at its highest value so ids handed out by the rolled-back generation
        are not reused.  Rolling back twice restores the state before the first rollback.
        """
        with self._locked():
            self._reload_if_changed(for_write=True)
            cur = self._s.manifest
            prev = cur.get("previous")
            if not prev:
                raise GalleryError(f"{self.path}: no previous generation to roll back to")
            for name in _generation_files(prev):
                if not (self.path / name).is_file():
                    raise GalleryCorruptError(f"{self.path}: previous generation file {name} is missing; "
                                              "cannot roll back")
            try:
                Integrity(self.path, prev.get("checksums"), _generation_files(prev))
                index = idx.read_index(self.path / prev["index_file"])
                table = items_mod.read(self.path / prev["items_file"])
            except GalleryCorruptError as exc:
                raise GalleryCorruptError(f"{self.path}: cannot roll back: the previous generation is damaged too "
                                          f"({exc})") from None
            except Exception as exc:  # FAISS RuntimeError, Arrow errors on a garbage file
                raise GalleryCorruptError(f"{self.path}: cannot roll back: the previous generation's files cannot be "
                                          f"read ({type(exc).__name__}: {exc}); rebuild the gallery") from None
            base = {k: v for k, v in prev.items() if k != "previous"}
            self._s = _State.of(cur, index, table, _open_exact(self.path, prev), local=_open_local(self.path, prev),
                                pages=_open_pages(self.path, prev))
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

    # ------------------------------------------------------------------ internals: index writes


class _StateView:
    """Search and labels of one generation's state, before it is committed (self-calibration)."""

    def __init__(self, state: _State, name: str) -> None:
        self._s = state
        self._name = name

    def search(self, feats: np.ndarray, k: int, params: dict[str, int] | None = None,
               labels: Any = None, local: np.ndarray | None = None,
               exclude: Sequence[str] | None = None, pages: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        return _search_state(self._s, np.asarray(feats, dtype=np.float32), k, specs.check_search_params(params),
                             labels, self._name, local, exclude, pages)

    def labels_of(self, ids: np.ndarray) -> np.ndarray:
        return _labels_of_state(self._s, ids, self._name)

    @property
    def reranks(self) -> bool:
        return self._s.rerank is not None

    @property
    def verifies(self) -> bool:
        return self._s.verify is not None

    @property
    def manifest(self) -> dict[str, Any]:
        return self._s.manifest


def _search_state(s: _State, q: np.ndarray, k: int, params: Any, labels: Any = None,
                  name: str = "gallery", local: np.ndarray | None = None,
                  exclude: Sequence[str] | None = None, pages: Sequence[Any] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by cosine; with the queries' ``local`` maps and a generation that re-ranks, the top
    ``k_local`` of each row re-scored by their maps (rerank.py) and the row re-sorted.

    ``exclude``: per row, a label whose exemplars that row must not see, as if the gallery did not
    hold that type (leave one type out).  Not the same as dropping the label from the answer once a
    search re-ranks: a left-out type's own exemplar would sit among the candidates and move the
    others' re-ranked scores.

    ``pages``: the queries' page prints; with a generation that verifies (and ``local``), the re-ranked
    top ``k`` are then verified by registration (rerank.verify_top)."""
    if s.integrity is not None:
        s.integrity.raise_if_bad()  # a file that changed after it was written: no answers from it
    n = len(q)
    allow = None if labels is None else _ids_with_labels(s, labels, name)
    count = int(len(s.ids) if allow is None else len(allow))
    if count == 0:
        return np.full((n, k), idx.PAD_SCORE, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
    rec = s.rerank if local is not None else None
    if rec is None and exclude is None:
        return idx.search(s.index, np.ascontiguousarray(q), min(k, count), s.plan, params, s.dead, s.exact, allow)
    if exclude is not None and len(exclude) != n:
        raise GalleryError(f"gallery {name}: {len(exclude)} excluded labels for {n} queries")
    want = max(k, int(rec["k"])) if rec is not None else k
    extra = 0 if exclude is None else max((len(s.by_label.get(str(x), ())) for x in set(exclude)), default=0)
    depth = min(want + extra, count)
    scores, ids = idx.search(s.index, np.ascontiguousarray(q), depth, s.plan, params, s.dead, s.exact, allow)
    if exclude is not None:
        scores, ids = _without_labels(s, scores, ids, exclude, name)
    if rec is not None:
        maps = np.asarray(local)
        if maps.shape != (n, *s.local.shape):
            raise GalleryError(f"gallery {name}: query local maps have shape {maps.shape}, the gallery holds "
                               f"{tuple(s.local.shape)} per exemplar; encode queries with the gallery's model")
        scores, ids = rerank_top(scores, ids, maps, s.local.get, int(rec["k"]), float(rec["weight"]))
        ver = s.verify if pages is not None else None
        if ver is not None:
            if len(pages) != n:
                raise GalleryError(f"gallery {name}: {len(pages)} page prints for {n} queries")
            scores, ids = verify_top(scores, ids, pages, s.pages.get, int(ver["k"]), float(ver["weight"]),
                                     int(ver["keypoints"]), pageprint.comparison_of(ver))
    keep = min(k, count)
    return scores[:, :keep], ids[:, :keep]


def _without_labels(s: _State, scores: np.ndarray, ids: np.ndarray, exclude: Sequence[str],
                    name: str) -> tuple[np.ndarray, np.ndarray]:
    """Each row's hits without the exemplars of its excluded label, the rest moved up in order."""
    valid = ids >= 0
    labs = np.full(ids.shape, "", dtype=object)
    labs[valid] = _labels_of_state(s, ids[valid], name)
    drop = labs == np.asarray([str(x) for x in exclude], dtype=object)[:, None]
    keep = valid & ~drop
    order = np.argsort(~keep, axis=1, kind="stable")  # kept hits first, in their order
    out_s = np.where(keep, scores, idx.PAD_SCORE)
    out_i = np.where(keep, ids, -1)
    return np.take_along_axis(out_s, order, 1).astype(np.float32), np.take_along_axis(out_i, order, 1)


def _ids_with_labels(s: _State, labels: Any, name: str) -> np.ndarray:
    """Live ids whose label is one of ``labels``; a label the gallery does not hold is an error
    (a typo must not silently narrow a search to nothing)."""
    wanted = {str(lab) for lab in ([labels] if isinstance(labels, str) else labels)}
    if not wanted:
        raise GalleryError(f"gallery {name}: an empty label filter allows nothing; give at least one label")
    missing = sorted(wanted - set(s.by_label))
    if missing:
        raise GalleryError(f"gallery {name}: no exemplars with label(s) {missing[:10]}"
                           f"{' ...' if len(missing) > 10 else ''} (`indexer list` shows the labels)")
    return np.sort(np.concatenate([s.by_label[lab] for lab in wanted]))


def _sources_of_state(s: _State, ids: np.ndarray | Sequence[int]) -> list[str | None]:
    """The recorded source of each live id (None for -1 or an id not in this generation)."""
    flat = np.asarray(ids, dtype=np.int64).reshape(-1)
    if not len(s.ids) or not len(flat):
        return [None] * len(flat)
    pos = np.minimum(np.searchsorted(s.ids, flat), len(s.ids) - 1)
    found = (s.ids[pos] == flat) & (flat >= 0)
    col = s.items.column("source").take(pa.array(pos)).to_pylist()
    return [c if ok else None for c, ok in zip(col, found)]


def _labels_of_state(s: _State, ids: np.ndarray | Sequence[int], name: str) -> np.ndarray:
    arr = np.asarray(ids, dtype=np.int64)
    flat = arr.reshape(-1)
    out = np.full(flat.shape, "", dtype=object)
    valid = np.flatnonzero(flat >= 0)
    if valid.size:
        known = s.ids
        pos = np.minimum(np.searchsorted(known, flat[valid]), max(known.size - 1, 0))
        found = (known[pos] == flat[valid]) if known.size else np.zeros(valid.size, dtype=bool)
        if not found.all():
            unknown = sorted(set(flat[valid][~found].tolist()))
            raise GalleryError(f"ids not in gallery {name}: {unknown[:20]}")
        out[valid] = s.labels[pos]
    return out.reshape(arr.shape)
