"""The register gallery: a directory holding a FAISS index, an items table and a manifest.

On disk (see the shared brief)::

    GALLERY/manifest.json          commit point, replaced atomically; names the files below
    GALLERY/index-000N.faiss       the FAISS index (flat IndexIDMap2(IndexFlatIP) by default), ids = item ids
    GALLERY/items-000N.parquet     id, label, source, sha256, added_at, page, note
    GALLERY/exact-000N[.ids].npy   exact float32 vectors beside a lossy (SQ8/PQ) index: see exact.py
    GALLERY/.lock                  writers' lock

Index types (``index_spec``: flat, hnsw, ivf, auto, faiss:<factory>) and the plan actually built
(``manifest["index"]``) are described in specs.py and index.py.  An index that cannot remove
(HNSW) keeps removed ids as *tombstones* (``manifest["tombstones"]`` counts them; they are the
index ids missing from the items table) that every search excludes, until :meth:`Gallery.compact`
rebuilds.  ``count`` is always the number of live items.

Loading a generation from disk lives in state.py.
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

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from . import index as idx
from . import items as items_mod
from . import selfcal
from . import specs
from . import tune
from .exact import ExactStore, LocalStore, PagePrintStore
from .gallery_selfcal import SelfCalibrationMixin, _probe_batch, _probes_with_ids
from .generations import (DEFAULT_LOCK_TIMEOUT, LOCK_FILE, GenerationsMixin, _labels_of_state,  # noqa: F401
                          _now, _search_state, _sources_of_state)
from .importer import EncoderInfo, check_vectors  # noqa: F401  (EncoderInfo: re-exported for callers)
from .errors import (EncoderMismatchError, GalleryCorruptError, GalleryError, LabelError,  # noqa: F401
                     NearDuplicateError, UnknownItemsError)
from .neardup import NearDuplicatesMixin
from .state import (_GEN_FILE, FORMAT_VERSION, MANIFEST, State as _State,  # noqa: F401
                    load_state as _load_state, read_manifest as _read_manifest,
                    try_read_manifest as _try_read_manifest)
from .ingest import Batch, Entry, file_mode_collisions, near_duplicate_pairs_within, read_and_encode, resolve_inputs
from .labels import LABEL_MODES, check_label, scan_register

METRIC = "inner_product"
# Two images of *different* document types this similar (cosine) would make both labels
# ambiguous for retrieval; refused unless forced.  Stored per gallery in the manifest.
NEAR_DUPLICATE_BOUND = 0.97
MAX_LISTED = 50  # problems listed in one error message before "... and N more"
# A write copies the index first (readers of this object keep a consistent index; a failed
# write leaves it untouched) when it is smaller than this; bigger ones are changed in place
# (a copy of a 1 GB index costs seconds) and reloaded from disk if the write fails.
CLONE_MAX_BYTES = 256 << 20


def _clip(lines: list[str]) -> list[str]:
    return lines if len(lines) <= MAX_LISTED else lines[:MAX_LISTED] + [f"... and {len(lines) - MAX_LISTED} more"]


@dataclass
class AddResult:
    """What a build/add did: ids added, inputs skipped (duplicates) and near-duplicates accepted (force).

    ``notes``: other things the caller should know (checks skipped, index rebuilt and why).
    """

    added_ids: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    near_duplicates: list[str] = field(default_factory=list)
    generation: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def added(self) -> int:
        return len(self.added_ids)


class Gallery(GenerationsMixin, SelfCalibrationMixin, NearDuplicatesMixin):
    """An opened gallery.  Use :meth:`open` or :meth:`build`; writes go through methods that lock.

    The facade: opening, facts, reading and the write operations are here; committing generations
    (lock, commit, prune, rollback) is in generations.py, the self-calibration's storage in
    gallery_selfcal.py, the near-duplicate policy in neardup.py.
    """

    def __init__(self, path: Path, state: _State, encoder: Any = None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, mmap: bool | None = None) -> None:
        self.path = Path(path)
        self._s = state
        self.encoder = encoder
        self.lock_timeout = lock_timeout
        self.last_result: AddResult | None = None
        self._lock = None
        self._mmap = mmap

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike, encoder: Any = None,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT, strict: bool = True, mmap: bool | None = None) -> "Gallery":
        """Open a gallery for reading (and writing through its methods).

        With ``encoder``, refuses a gallery built by another model (fingerprints differ).
        ``strict=False`` opens files whose counts disagree (so ``verify`` can list every problem).
        ``mmap``: map the index file read-only instead of reading it (fast, memory-frugal opens of
        big galleries; pages are shared between processes).  None (default) maps files of at least
        MMAP_MIN_BYTES.  Writes through this object reload the index normally first.
        """
        path = Path(path)
        g = cls(path, _load_state(path, strict=strict, mmap=mmap), encoder, lock_timeout, mmap)
        if encoder is not None:
            g._check_encoder(encoder)
        return g

    @classmethod
    def create(cls, out: str | os.PathLike, encoder: Any, label_mode: str = "folder",
               index_spec: str = idx.DEFAULT_SPEC, near_duplicate_bound: float = NEAR_DUPLICATE_BOUND,
               overwrite: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
               index_params: dict[str, Any] | None = None, self_calibrate: bool | None = None,
               self_calibration: selfcal.Settings | None = None, rerank: bool = True) -> "Gallery":
        """An empty gallery at ``out`` (generation 1); see :meth:`build` for ``overwrite`` and
        ``self_calibrate`` (exemplars added later as images are probed; imported vectors are not).

        ``encoder`` may be an :class:`EncoderInfo` (e.g. before importing vectors).
        """
        return cls._build_from(out, encoder, None, label_mode, index_spec, near_duplicate_bound, overwrite,
                               lock_timeout, force=False, index_params=index_params, self_calibrate=self_calibrate,
                               self_calibration=self_calibration, rerank=rerank)

    @classmethod
    def build(cls, register_dir: str | os.PathLike, out: str | os.PathLike, encoder: Any,
              label_mode: str = "folder", index_spec: str = idx.DEFAULT_SPEC, force: bool = False,
              overwrite: bool = False, near_duplicate_bound: float = NEAR_DUPLICATE_BOUND,
              lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
              progress: Callable[[int], None] | None = None,
              index_params: dict[str, Any] | None = None, self_calibrate: bool | None = None,
              self_calibration: selfcal.Settings | None = None, rerank: bool = True,
              verify: bool = False) -> "Gallery":
        """Encode every image of ``register_dir`` into a new gallery at ``out``.

        ``out`` must not exist, be empty, or (with ``overwrite=True``) be a gallery, which is then
        replaced atomically in place (a new generation; ids continue, never reused).  ``force``
        accepts near-identical images under different labels.  ``index_spec``/``index_params``:
        see specs.py (``flat`` default; ``auto`` for galleries that may grow large).
        ``self_calibrate`` (default: on, unless the environment sets DOCRETRIEVER_SELF_CALIBRATE=0):
        measure the gallery's own open-set table from simulated captures of its exemplars (selfcal.py),
        kept up to date by every later write; ``self_calibration`` tunes it.  ``rerank`` (default on, for
        a model with a local map): keep each exemplar's map (23 KB for the default model) so searches
        re-rank their top candidates by it; off, the gallery answers with the cosine alone (huge
        galleries where the disk matters more than look-alike types).  ``verify`` (default off; needs
        re-ranking): keep each exemplar's page print (150 KB, encoders.pageprint) so searches given the
        queries' prints verify their top candidates by registration.
        ``g.last_result`` says what happened.
        """
        scan = scan_register(register_dir, label_mode)
        entries = [Entry(p, lab, derived=True) for p, lab in scan.entries]
        bad = []
        for e in entries:  # the same rules as `add`: refused before anything is read
            try:
                check_label(e.label)
            except GalleryError as exc:
                bad.append(f"{e.path}: {exc}")
        if bad:
            raise LabelError(_clip(bad), "bad labels (from folder or file names); nothing was built")
        return cls._build_from(out, encoder, entries, label_mode, index_spec, near_duplicate_bound, overwrite,
                               lock_timeout, force=force, progress=progress, index_params=index_params,
                               self_calibrate=self_calibrate, self_calibration=self_calibration, rerank=rerank,
                               verify=verify)

    @classmethod
    def _build_from(cls, out: str | os.PathLike, encoder: Any, entries: list[Entry] | None, label_mode: str,
                    index_spec: str, bound: float, overwrite: bool, lock_timeout: float, force: bool,
                    progress: Callable[[int], None] | None = None,
                    index_params: dict[str, Any] | None = None, self_calibrate: bool | None = None,
                    self_calibration: selfcal.Settings | None = None, rerank: bool = True,
                    verify: bool = False) -> "Gallery":
        if label_mode not in LABEL_MODES:
            raise GalleryError(f"unknown label mode {label_mode!r}; choose one of {', '.join(LABEL_MODES)}")
        if not -1.0 <= bound <= 1.0:
            raise GalleryError(f"near-duplicate bound is a cosine in [-1, 1], not {bound}")
        out = Path(out)
        spec = specs.parse_spec(index_spec, index_params)  # fail on a bad spec before encoding anything
        idx.create(specs.eventual_plan(spec, int(encoder.dim)), int(encoder.dim))  # FAISS accepts it?
        _check_target(out, overwrite)
        with_local = bool(rerank) and bool(getattr(encoder, "has_local", False))
        if verify and not with_local:
            raise GalleryError("verifying needs a gallery that re-ranks: a model with a local map, and rerank on")
        pages_rec = _pages_record(encoder) if verify else None
        batch = read_and_encode(entries, encoder, {}, progress, local=with_local,
                                prints=_print_settings(pages_rec)) if entries else Batch(
            feats=np.zeros((0, encoder.dim), dtype=np.float32))
        result = AddResult(skipped=list(batch.skipped))
        pairs = near_duplicate_pairs_within(batch.feats, batch.labels, bound)
        lines = [f"{batch.sources[i]} ({batch.labels[i]!r}) ~ {batch.sources[j]} ({batch.labels[j]!r}): "
                 f"cosine {s:.4f}" for i, j, s in pairs]
        if lines and not force:
            raise NearDuplicateError(_clip(lines), bound)
        result.near_duplicates = lines
        enabled = selfcal.enabled_by_default() if self_calibrate is None else bool(self_calibrate)
        settings = self_calibration or selfcal.Settings()
        probes = _probe_batch(batch, encoder, set(), settings, result, verify=pages_rec) if enabled and len(batch) \
            else None
        out.mkdir(parents=True, exist_ok=True)
        g = cls(out, _State.of({}, None, items_mod.empty()), encoder, lock_timeout)
        with g._locked():
            _check_target(out, overwrite)  # re-check: another builder may have won the race
            old = _try_read_manifest(out)
            next_id = int(old.get("next_id", 0)) if old else 0
            ids = np.arange(next_id, next_id + len(batch), dtype=np.int64)
            now = _now()
            manifest = {
                "format_version": FORMAT_VERSION,
                "encoder": {"name": encoder.name, "fingerprint": encoder.fingerprint, "dim": int(encoder.dim),
                            **({"path": str(Path(encoder.path).resolve())} if getattr(encoder, "path", None) else {})},
                "metric": METRIC, "index_spec": spec.text, "index_params": dict(spec.params),
                "label_mode": label_mode, "created_at": now, "calibration": None,
                "near_duplicate_bound": float(bound), "next_id": next_id,
                "self_calibration": {"enabled": enabled, "settings": settings.to_dict()} if enabled else {"enabled": False},
                **({"local": _local_record(encoder)} if with_local else {}),
                **({"pages": pages_rec} if pages_rec else {}),
            }
            g._s = _State.of(old or {}, None, items_mod.empty())
            table = items_mod.make_rows(ids, batch.labels, batch.sources, batch.sha256, batch.pages or None)
            g._write_new_index(spec, ids, batch.feats, table, manifest, next_id + len(batch), result,
                               probes=_probes_with_ids(probes, batch, ids), local=batch.local, pages=batch.prints)
        result.added_ids = ids.tolist()
        result.generation = g.generation
        g.last_result = result
        return g

    def reload(self) -> "Gallery":
        """Re-read the gallery from disk (another process may have committed a new generation)."""
        state = _load_state(self.path, mmap=self._mmap)
        self._s = state
        return self

    # ------------------------------------------------------------------ facts
    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the current manifest."""
        return json.loads(json.dumps(self._s.manifest))

    @property
    def items(self) -> pa.Table:
        """The items table (sorted by id): the live items."""
        return self._s.items

    @property
    def index(self) -> Any:
        """The FAISS index.  May be memory-mapped read-only (see :meth:`open`): never add to it
        directly (FAISS aborts the interpreter on an add to mapped flat codes); use the methods."""
        return self._s.index

    @property
    def plan(self) -> specs.Plan:
        """The index actually built (type, factory, parameters, why)."""
        return self._s.plan

    @property
    def spec(self) -> specs.Spec:
        m = self._s.manifest
        return specs.parse_spec(m.get("index_spec", idx.DEFAULT_SPEC), m.get("index_params") or {})

    @property
    def tombstones(self) -> int:
        """Removed ids still inside the index (HNSW cannot remove); excluded from every search."""
        return len(self._s.dead) if self._s.dead is not None else 0

    @property
    def calibration(self) -> dict[str, Any] | None:
        cal = self._s.manifest.get("calibration")
        return json.loads(json.dumps(cal)) if cal is not None else None

    @property
    def self_calibration(self) -> dict[str, Any] | None:
        """The gallery's own open-set table and its provenance (selfcal.py), or None."""
        rec = self._s.manifest.get("self_calibration")
        return json.loads(json.dumps(rec)) if rec is not None else None

    @property
    def self_calibrated(self) -> bool:
        return bool((self._s.manifest.get("self_calibration") or {}).get("enabled"))

    @property
    def generation(self) -> int:
        return int(self._s.manifest["generation"])

    @property
    def count(self) -> int:
        """Live items (tombstoned ones excluded)."""
        return int(len(self._s.ids))

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
        return {lab: len(ids) for lab, ids in self._s.by_label.items()}

    def __repr__(self) -> str:
        return (f"Gallery({str(self.path)!r}, generation={self.generation}, vectors={self.count}, "
                f"labels={self._s.manifest.get('labels')}, encoder={self._s.manifest['encoder']['name']!r}, "
                f"index={self._s.plan.type})")

    # ------------------------------------------------------------------ reading
    def search(self, feats: np.ndarray, k: int,
               params: dict[str, int] | None = None, labels: Sequence[str] | None = None,
               local: np.ndarray | None = None, exclude: Sequence[str] | None = None,
               pages: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` cosine scores and item ids per query row: ``(n, k')`` float32 and int64.

        ``k' = min(k, count)``; an empty gallery gives ``(n, k)`` ids of -1 with score
        ``index.PAD_SCORE`` (-inf); an approximate index may also pad with -1.  Query rows should
        be L2-normalised by the gallery's encoder.  ``params`` sets search-time parameters for this
        call only: ``efSearch`` (HNSW), ``nprobe`` (IVF), ``rerank`` (candidates per result
        re-scored exactly when the index stores compressed codes; 0 = off).  Parameters that do not
        apply to the index type in use are ignored (an ``ivf`` gallery is flat until trained).
        Removed items are never returned; scores are exact cosines unless ``rerank=0`` on a
        compressed index.  ``labels``: search only the exemplars of these labels (a workflow that
        knows the document is one of a few types), inside the index search by a FAISS ID selector;
        a label the gallery does not hold raises :class:`GalleryError`.  ``local``: the queries' local
        maps (``Encoder.encode_batch(x, local=True)``); when the gallery :attr:`reranks`, each row's
        top ``k_local`` are re-scored by them (rerank.py) and the scores are re-ranked scores, not
        cosines; otherwise ignored.  ``exclude``: per query row, a label that row searches without,
        as if the gallery did not hold that type (leave one type out, for calibration).  ``pages``: the
        queries' page prints (encoders.pageprint.of_image(..., keep_gray=True)); when the gallery
        :attr:`verifies` (and ``local`` is given), the re-ranked top candidates are verified by
        registering each query onto them, and the scores are verified scores.
        """
        p = specs.check_search_params(params)
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
        return _search_state(self._s, q, k, p, labels, str(self.path), local, exclude, pages)

    @property
    def verifies(self) -> bool:
        """Whether searches given the queries' page prints verify their top candidates (the gallery
        holds every exemplar's print)."""
        return self._s.verify is not None

    @property
    def reranks(self) -> bool:
        """Whether searches given the queries' local maps re-rank (the gallery holds every exemplar's map)."""
        return self._s.rerank is not None

    def warm(self) -> dict[str, float]:
        """Fault in the memory-mapped exact vectors now, for a long-running service: otherwise its
        first queries pay a page fault per re-ranked row (bench_index.py, 1M vectors: first-pass
        p99 2.1 ms against 0.79 ms once warm).  Returns ``{"bytes": ..., "seconds": ...}``; a
        gallery without an exact store (exact index) has nothing to warm."""
        t = time.perf_counter()
        touched = self._s.exact.warm() if self._s.exact is not None else 0
        touched += self._s.local.warm() if self._s.local is not None else 0  # re-ranking reads candidates' maps
        return {"bytes": float(touched), "seconds": time.perf_counter() - t}

    def sources_of(self, ids: np.ndarray | Sequence[int]) -> list[str | None]:
        """The recorded source (file the exemplar came from) of each id, None where unknown."""
        return _sources_of_state(self._s, ids)

    def labels_of(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Labels for item ids (any shape); id -1 (padding) gives ""."""
        return _labels_of_state(self._s, ids, str(self.path))

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the live items in items order (ascending id): the exact vectors."""
        ids, vecs = self.stored_vectors()
        keep = np.isin(ids, self._s.ids)
        ids, vecs = ids[keep], vecs[keep]
        order = np.argsort(ids, kind="stable")
        return ids[order], vecs[order]

    def exact_ids(self) -> np.ndarray | None:
        """Ids held by the exact-vector store beside a lossy index (None: the index stores exact vectors)."""
        return None if self._s.exact is None else self._s.exact.ids

    def local_ids(self) -> np.ndarray | None:
        """Ids whose local map the gallery holds (None: it keeps none, so it does not re-rank)."""
        return None if self._s.local is None else self._s.local.ids

    def local_maps(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """The stored local maps of ``ids`` (len(ids), cells, C) float16; the gallery must keep maps."""
        if self._s.local is None:
            raise GalleryError(f"{self.path}: the gallery keeps no local maps (it does not re-rank)")
        return self._s.local.get(np.asarray(ids, dtype=np.int64))

    def stored_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, exact vectors) of everything stored, tombstones included: the exact store beside a
        lossy index, else the index itself."""
        s = self._s
        if s.exact is not None:
            stored = idx.index_ids(s.index)
            if s.dead is not None:  # a segment merge may have dropped tombstoned ids' rows
                stored = stored[np.isin(stored, s.exact.ids)]
            return stored, s.exact.get(stored)
        return idx.all_vectors(s.index)

    def stats(self) -> dict[str, Any]:
        m = self._s.manifest
        sizes: dict[str, Any] = {}
        for key in ("index_file", "items_file"):
            p = self.path / m[key]
            sizes[key] = p.stat().st_size if p.exists() else None
        sizes["manifest"] = (self.path / MANIFEST).stat().st_size
        sizes["exact_store"] = sum((self.path / f).stat().st_size for f in self._s.exact.files) \
            if self._s.exact is not None else 0
        sizes["directory_total"] = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        plan = self._s.plan
        stored = int(self._s.index.ntotal)
        return {
            "gallery": str(self.path), "generation": self.generation, "vectors": self.count,
            "labels": len(self.label_counts()), "dim": self.dim, "metric": m.get("metric", METRIC),
            "index_spec": m["index_spec"], "index_params": dict(m.get("index_params") or {}),
            "index_type": plan.type, "index": plan.to_dict(), "index_class": idx.describe(self._s.index),
            "search_defaults": plan.search_defaults, "search_tuning": m.get("search_tuning"),
            "stored_vectors": stored, "tombstones": self.tombstones,
            "bytes_per_vector": idx.code_bytes_per_vector(self._s.index),
            "index_file_bytes_per_vector": round(sizes["index_file"] / stored, 1) if stored and sizes["index_file"]
            else None,
            "exact_store": {"rows": self._s.exact.rows, "bytes": sizes["exact_store"],
                            "bytes_per_vector": round(sizes["exact_store"] / max(self._s.exact.rows, 1), 1),
                            "segments": len(self._s.exact.segments)} if self._s.exact is not None else None,
            "local_store": self._local_stats(),
            "pages_store": self._pages_stats(),
            "memory_mapped": self._s.mapped,
            "encoder": dict(m["encoder"]), "label_mode": self.label_mode, "next_id": int(m.get("next_id", 0)),
            "near_duplicate_bound": self.near_duplicate_bound, "calibrated": m.get("calibration") is not None,
            "created_at": m.get("created_at"), "updated_at": m.get("updated_at"),
            "previous_generation": (m.get("previous") or {}).get("generation"), "sizes": sizes,
        }

    def _store_bytes(self, store: ExactStore) -> int:
        return sum((self.path / f).stat().st_size for f in store.files)

    def _per_exemplar_stats(self, st: Any, rec: dict[str, Any] | None, **extra: Any) -> dict[str, Any] | None:
        """Size and settings of a per-exemplar store (local maps, page prints), None when there is none."""
        if st is None or rec is None:
            return None
        size = self._store_bytes(st)
        return {"rows": st.rows, "bytes": size, "bytes_per_exemplar": round(size / max(st.rows, 1), 1),
                "segments": len(st.segments), **extra, "weight": rec["weight"]}

    def _pages_stats(self) -> dict[str, Any] | None:
        rec = self._s.verify
        from encoders import pageprint

        return self._per_exemplar_stats(self._s.pages, rec, **({} if rec is None else
                                        {"keypoints": rec["keypoints"], "side": rec["side"],
                                         "comparison": pageprint.comparison_of(rec)}))

    def _local_stats(self) -> dict[str, Any] | None:
        st, rec = self._s.local, self._s.rerank
        return self._per_exemplar_stats(st, rec, **({} if st is None or rec is None else
                                        {"shape": list(st.shape), "k": rec["k"]}))

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
        bound = self._bound(near_duplicate_bound)
        for e in entries:
            check_label(e.label)
        if self.label_mode == "file":
            collisions = file_mode_collisions(entries)
            if collisions:
                raise LabelError(collisions, "cannot derive labels (file mode)")
        # Encode outside the lock (slow); re-check everything against fresh state under it.
        batch = read_and_encode(entries, enc, self._known_sha(), progress, local=self.reranks,
                                prints=_print_settings(self._s.verify))
        probes = None
        if self.self_calibrated and len(batch):
            settings = selfcal.Settings.from_dict(self._s.manifest["self_calibration"].get("settings"))
            probes = _probe_batch(batch, enc, self._probed_labels(), settings, None,
                                  n_types=len(set(self._s.labels.tolist()) | set(batch.labels)), verify=self._s.verify)
        return self._add_batch(batch, enc, force, bound, check_near_duplicates=True, probes=probes)

    def add_vectors(self, vectors: np.ndarray, labels: Sequence[str], sources: Sequence[str] | None = None,
                    sha256: Sequence[str] | None = None, encoder: Any = None, force: bool = False,
                    near_duplicate_bound: float | None = None, check_near_duplicates: bool = True,
                    pages: Sequence[int | None] | None = None) -> AddResult:
        """Register precomputed vectors (no image is read): the primitive behind ``indexer import``.

        ``vectors`` (n, dim) must be finite and unit-norm; every bad row is listed (0-based row
        numbers) and nothing is added.  ``encoder`` (an Encoder or :class:`EncoderInfo`; default the
        one this gallery was opened with) names the model that made them and must be the gallery's.
        ``sources`` default to "vectors#row=<i>"; ``sha256`` (of the source images, if known) makes
        rows whose image is already registered be skipped, like :meth:`add` (for a page of a multi-page
        file, give the file's hash and its ``pages`` index: the key is :func:`items.page_key`, as
        :meth:`add` makes it, so either way of adding a page skips the other).  Near-duplicates are
        checked as in :meth:`add` unless ``check_near_duplicates=False`` (the check among the new
        vectors is skipped, with a note, above NEAR_DUP_BATCH_MAX rows: it is quadratic).
        """
        enc = self._encoder_for_write(encoder)
        bound = self._bound(near_duplicate_bound)
        feats = check_vectors(vectors, self.dim, "vectors")
        n = len(feats)
        labels = list(labels)
        if len(labels) != n:
            raise GalleryError(f"{len(labels)} labels for {n} vectors")
        bad = []
        for i, lab in enumerate(labels):
            try:
                check_label(lab)
            except GalleryError as exc:
                bad.append(f"row {i}: {exc}")
        if bad:
            raise LabelError(_clip(bad), "bad labels; nothing was added")
        srcs = [str(s) for s in sources] if sources is not None else [f"vectors#row={i}" for i in range(n)]
        shas = ["" if s is None else str(s) for s in sha256] if sha256 is not None else [""] * n
        pgs = [None if g is None else int(g) for g in pages] if pages is not None else [None] * n
        if len(srcs) != n or len(shas) != n or len(pgs) != n:
            raise GalleryError(f"sources/sha256/pages must have one entry per vector ({n})")
        shas = [items_mod.page_key(sha, pg) for sha, pg in zip(shas, pgs)]
        batch = Batch(sources=srcs, labels=labels, sha256=shas, derived=[False] * n, pages=pgs, feats=feats)
        known = self._known_sha()
        seen: dict[str, int] = {}
        keep = []
        for i, sha in enumerate(shas):
            if sha and sha in known:
                batch.skipped.append(f"row {i} ({srcs[i]}): same image already registered ({known[sha]}); skipped")
                keep.append(False)
            elif sha and sha in seen:
                batch.skipped.append(f"row {i} ({srcs[i]}): same image as row {seen[sha]}; skipped")
                keep.append(False)
            else:
                if sha:
                    seen[sha] = i
                keep.append(True)
        if not all(keep):
            batch.keep(keep)
        return self._add_batch(batch, enc, force, bound, check_near_duplicates)

    def _bound(self, near_duplicate_bound: float | None) -> float | None:
        if near_duplicate_bound is not None and not -1.0 <= near_duplicate_bound <= 1.0:
            raise GalleryError(f"near-duplicate bound is a cosine in [-1, 1], not {near_duplicate_bound}")
        return near_duplicate_bound

    def _add_batch(self, batch: Batch, enc: Any, force: bool, near_duplicate_bound: float | None,
                   check_near_duplicates: bool, probes: selfcal.Probes | None = None) -> AddResult:
        with self._locked():
            self._writable()
            self._check_encoder(enc)
            known = self._known_sha()
            keep = [not sha or sha not in known for sha in batch.sha256]
            batch.skipped += [f"{src}: same image bytes already registered ({known[sha]}); skipped"
                              for src, sha in zip(batch.sources, batch.sha256) if sha and sha in known]
            batch.keep(keep)
            result = AddResult(skipped=batch.skipped, generation=self.generation)
            if len(batch) == 0:
                self.last_result = result
                return result
            if self.label_mode == "file":
                self._refuse_file_mode_relabel(batch)
            bound = self.near_duplicate_bound if near_duplicate_bound is None else float(near_duplicate_bound)
            if check_near_duplicates:
                lines = self._near_duplicates(batch, bound, result.notes)
                if lines and not force:
                    raise NearDuplicateError(_clip(lines), bound)
                result.near_duplicates = lines
            else:
                result.notes.append("near-duplicate check skipped (asked)")
            next_id = int(self._s.manifest.get("next_id", 0))
            if self._s.ids.size:
                next_id = max(next_id, int(self._s.ids.max()) + 1)
            ids = np.arange(next_id, next_id + len(batch), dtype=np.int64)
            rows = items_mod.make_rows(ids, batch.labels, batch.sources, batch.sha256, batch.pages or None)
            self._write(ids, batch.feats, rows, np.zeros(0, np.int64), next_id=next_id + len(batch), result=result,
                        probes=_probes_with_ids(probes, batch, ids), add_local=batch.local, add_pages=batch.prints)
            result.added_ids = ids.tolist()
            result.generation = self.generation
        self.last_result = result
        return result

    def remove(self, labels: Sequence[str] = (), ids: Sequence[int] = ()) -> list[int]:
        """Remove every item of ``labels`` and the items ``ids``; returns the removed ids.

        Unknown labels or ids raise :class:`UnknownItemsError` and remove nothing.  Removed ids
        are never reused and never returned by a search: flat and IVF indexes drop them (one
        batched call); HNSW keeps them as tombstones that searches exclude until :meth:`compact`.
        """
        labels = [labels] if isinstance(labels, str) else list(labels)
        want_ids = [int(i) for i in ids]
        if not labels and not want_ids:
            raise GalleryError("nothing to remove: give labels and/or ids")
        with self._locked():
            self._writable()
            present_labels = set(self._s.labels.tolist())
            present_ids = set(self._s.ids.tolist()) if want_ids else set()
            unknown = [f"label {lab!r}" for lab in labels if lab not in present_labels]
            unknown += [f"id {i}" for i in want_ids if i not in present_ids]
            if unknown:
                raise UnknownItemsError(_clip(unknown), f"not in gallery {self.path}; nothing was removed")
            mask = np.isin(self._s.labels.astype(str), np.asarray(labels, dtype=str)) if labels else \
                np.zeros(len(self._s.ids), dtype=bool)
            mask |= np.isin(self._s.ids, np.asarray(want_ids, dtype=np.int64))
            gone = self._s.ids[mask]
            self._write(np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32), None, gone)
        return sorted(gone.tolist())

    def compact(self, index_spec: str | None = None, index_params: dict[str, Any] | None = None) -> AddResult:
        """Rebuild the index from the live vectors, as a new generation.

        Drops HNSW tombstones, retrains IVF on the current vectors (and re-plans ``auto``/``ivf``
        for the current size), merges the exact store into one segment.  ``index_spec`` (with
        ``index_params``) switches the gallery to another index type.  ``result.notes`` says what
        was done.
        """
        with self._locked():
            self._writable()
            changes: dict[str, Any] = {}
            spec = self.spec
            if index_spec is not None:
                spec = specs.parse_spec(index_spec, index_params)
                changes = {"index_spec": spec.text, "index_params": dict(spec.params)}
            result = AddResult(generation=self.generation)
            before = (self._s.plan.type, self.tombstones)
            self._write(np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32), None, np.zeros(0, np.int64),
                        result=result, rebuild=f"compact ({before[1]} tombstone(s) dropped)", spec=spec,
                        changes=changes)
            result.generation = self.generation
        self.last_result = result
        return result

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

    def _write(self, add_ids: np.ndarray, add_vecs: np.ndarray, add_rows: pa.Table | None, remove_ids: np.ndarray,
               next_id: int | None = None, result: AddResult | None = None, rebuild: str | None = None,
               spec: specs.Spec | None = None, changes: dict[str, Any] | None = None,
               probes: selfcal.Probes | None = None, add_local: np.ndarray | None = None,
               add_pages: np.ndarray | None = None) -> None:
        """Add and/or remove vectors and commit a generation.  Caller holds the lock, state writable.

        Grows the index in place when the plan allows; rebuilds it from every live vector when the
        plan changes type, an IVF index outgrew its training (specs.rebuild_reason), or ``rebuild``.
        ``add_local``: the added exemplars' local maps (a gallery that re-ranks needs them; vectors
        added without them turn its re-ranking off, said so in the notes); ``add_pages`` likewise their
        page prints, for a gallery that verifies.
        """
        s = self._s
        spec = spec or self.spec
        notes = result.notes if result is not None else []
        keep = ~np.isin(s.ids, remove_ids) if len(remove_ids) else np.ones(len(s.ids), bool)
        table = s.items.filter(pa.array(keep)) if len(remove_ids) else s.items
        if add_rows is not None:
            table = pa.concat_tables([table, add_rows])
        n_after = int(keep.sum()) + len(add_ids)
        why = rebuild or specs.rebuild_reason(spec, s.plan, n_after)
        changes = dict(changes or {})
        local = self._side_after(
            "local", add_ids, add_local, s.ids[keep], merge=rebuild is not None, notes=notes,
            off_note=f"local-map re-ranking turned off: {len(add_ids)} exemplar(s) were added without local maps "
                     "(imported vectors); scores are the cosine alone from now on. Rebuild the gallery from its "
                     "images (indexer build --overwrite) to turn it on again")
        if local != "keep":
            changes["local"] = None if local is None else {**s.manifest["local"], "segments": local.describe()}
        pages = self._side_after(
            "pages", add_ids, add_pages, s.ids[keep], merge=rebuild is not None, notes=notes, off=local is None,
            off_note="verification turned off: exemplar(s) were added without page prints (imported vectors), or "
                     "re-ranking was turned off. Rebuild the gallery from its images to turn it on again")
        if pages != "keep":
            changes["pages"] = None if pages is None else {**s.manifest["pages"], "segments": pages.describe()}
        if why:
            live_ids, live_vecs = self._live_vectors(s.ids[keep])
            all_ids = np.concatenate([live_ids, add_ids])
            all_vecs = np.concatenate([live_vecs, add_vecs]) if len(add_ids) else live_vecs
            del live_vecs
            plan = specs.plan_for(spec, len(all_ids), s.plan, dim=self.dim)
            index, plan = idx.build(plan, self.dim, all_ids, all_vecs)
            gen = self._next_generation()
            exact = ExactStore([ExactStore.write_segment(self.path, gen, all_ids, all_vecs)], self.dim) \
                if idx.is_lossy(index) else None
            plan, tuning = tune.tune_plan(index, plan, all_ids, all_vecs, _labels_for(all_ids, table), exact,
                                          spec.params)
            notes.append(f"index rebuilt ({why}): now {plan.type} {plan.factory}")
            if tuning and "agreement" in tuning:
                notes.append(f"search tuned: {tune.describe(tuning)}")
            changes.update({"index": plan.to_dict(), "exact": exact.describe() if exact else None,
                            "search_tuning": tuning})
            self._commit(index, table, changes, next_id=next_id, exact=exact, probes=probes, result=result,
                         local=local, pages=pages)
            return
        in_place = _index_bytes(s.index) > CLONE_MAX_BYTES
        index = s.index if in_place else idx.clone(s.index)
        exact = s.exact
        index_changed = False
        try:
            if len(remove_ids):
                if idx.can_remove(index):
                    removed = idx.remove(index, remove_ids)
                    if removed != len(remove_ids):
                        raise GalleryCorruptError(f"{self.path}: index held {removed} of the {len(remove_ids)} ids to "
                                                  "remove; run `indexer verify`")
                    index_changed = True
                # else: tombstones — the index keeps them; the items table no longer has them
            if len(add_ids):
                idx.add(index, add_ids, add_vecs)
                index_changed = True
                if exact is not None:
                    exact = exact.appended(self.path, self._next_generation(), add_ids, add_vecs, live=s.ids[keep])
                    changes["exact"] = exact.describe()
                if tune.due(s.plan, s.manifest.get("search_tuning"), n_after):
                    live_ids, live_vecs = self._live_vectors(s.ids[keep])
                    all_ids = np.concatenate([live_ids, add_ids])
                    plan, tuning = tune.tune_plan(index, s.plan, all_ids, np.concatenate([live_vecs, add_vecs]),
                                                  _labels_for(all_ids, table), exact, spec.params)
                    del live_vecs
                    changes.update({"index": plan.to_dict(), "search_tuning": tuning})
                    if result is not None and tuning and "agreement" in tuning:
                        result.notes.append(f"search tuned: {tune.describe(tuning)}")
            self._commit(index if index_changed else None, table, changes, next_id=next_id, exact=exact,
                         probes=probes, result=result, local=local, pages=pages)
        except BaseException:
            if in_place:  # the in-memory index may be half-changed: the disk is the truth
                self._s = _load_state(self.path, mmap=False)
            raise

    def _side_after(self, key: str, add_ids: np.ndarray, add_rows: np.ndarray | None, live: np.ndarray,
                    merge: bool, notes: list[str], off_note: str, off: bool = False) -> Any:
        """The next generation's per-exemplar store named ``key`` in the manifest (``local``: local maps,
        ``pages``: page prints): "keep" (unchanged), a new store (rows of added exemplars appended;
        merged to the ``live`` ids on compaction), or None (turned off, ``off_note`` added to ``notes``:
        exemplars added without rows, e.g. imported vectors, would be candidates nothing can re-score;
        or ``off``)."""
        s = self._s
        store = getattr(s, key)
        if store is None or not s.manifest.get(key):
            return "keep"
        if off or (len(add_ids) and add_rows is None):
            notes.append(off_note)
            return None
        gen = self._next_generation()
        if merge and not len(add_ids):
            return store.merged(self.path, gen, live)
        if len(add_ids):
            return store.appended(self.path, gen, add_ids, np.asarray(add_rows, dtype=type(store).DTYPE), live=live)
        return "keep"

    def _live_vectors(self, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, exact vectors) for ``live`` ids (ascending)."""
        s = self._s
        if s.exact is not None:
            return live, s.exact.get(live)
        ids, vecs = idx.all_vectors(s.index)
        pos = np.argsort(ids, kind="stable")
        rows = pos[np.searchsorted(ids, live, sorter=pos)]
        return live, vecs[rows]

    def _write_new_index(self, spec: specs.Spec, ids: np.ndarray, feats: np.ndarray, table: pa.Table,
                         manifest: dict[str, Any], next_id: int, result: AddResult,
                         probes: selfcal.Probes | None = None, local: np.ndarray | None = None,
                         pages: np.ndarray | None = None) -> None:
        plan = specs.plan_for(spec, len(ids), dim=int(manifest["encoder"]["dim"]))
        index, plan = idx.build(plan, int(manifest["encoder"]["dim"]), ids, feats)
        exact = ExactStore([ExactStore.write_segment(self.path, self._next_generation(), ids, feats)],
                           int(manifest["encoder"]["dim"])) if idx.is_lossy(index) else None
        store = None
        if manifest.get("local") is not None and local is not None:
            store = LocalStore([LocalStore.write_segment(self.path, self._next_generation(), ids, local)]
                               if len(ids) else [], tuple(local.shape[1:]))
            manifest = {**manifest, "local": {**manifest["local"], "shape": list(store.shape),
                                              "segments": store.describe()}}
        prints = None
        if manifest.get("pages") is not None and pages is not None:
            prints = PagePrintStore([PagePrintStore.write_segment(self.path, self._next_generation(), ids, pages)]
                                    if len(ids) else [], (int(manifest["pages"]["row_bytes"]),))
            manifest = {**manifest, "pages": {**manifest["pages"], "segments": prints.describe()}}
        plan, tuning = tune.tune_plan(index, plan, ids, feats, _labels_for(ids, table), exact, spec.params)
        manifest = {**manifest, "index": plan.to_dict(), "exact": exact.describe() if exact else None,
                    "search_tuning": tuning}
        if plan.type != "flat" or spec.kind != "flat":
            result.notes.append(f"index: {plan.type} ({plan.reason})")
        if tuning and "agreement" in tuning:
            result.notes.append(f"search tuned: {tune.describe(tuning)}")
        self._commit(index, table, {}, next_id=next_id, base=manifest, exact=exact, probes=probes, result=result,
                     local=store, pages=prints)

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

    def _known_sha(self) -> "_ShaLookup":
        return _ShaLookup(self._s.items)

    def _refuse_file_mode_relabel(self, batch: Batch) -> None:
        present = {lab: (i, src) for i, lab, src in zip(self._s.ids.tolist(), self._s.labels.tolist(),
                                                        self._s.items.column("source").to_pylist())}
        problems = [f"{src}: label {lab!r} is already in the gallery (id {present[lab][0]}, {present[lab][1]}); "
                    f"file mode keeps one image per label: remove it first (indexer remove {self.path} "
                    f"--label {lab!r}) or give --label"
                    for src, lab, d in zip(batch.sources, batch.labels, batch.derived) if d and lab in present]
        if problems:
            raise LabelError(_clip(problems), "label collisions with the gallery (file mode); nothing was added")

def _local_record(encoder: Any) -> dict[str, Any]:
    """The manifest's re-ranking record for a gallery built by ``encoder`` (its contract's k and weight)."""
    loc = encoder.contract.local
    return {"k": int(loc.k), "weight": float(loc.weight), "shape": list(encoder.local_shape), "segments": []}


def _pages_record(encoder: Any) -> dict[str, Any]:
    """The manifest's verification record: page-print settings, the comparison and its weight mu, and the
    candidates verified."""
    from encoders import pageprint

    return {"keypoints": pageprint.KEYPOINTS, "side": pageprint.SIDE, "row_bytes": pageprint.row_bytes(),
            "comparison": pageprint.COMPARISON, "weight": pageprint.WEIGHT, "k": int(encoder.contract.local.k),
            "segments": []}


def _print_settings(rec: dict[str, Any] | None) -> tuple[int, int] | None:
    """(keypoints, side) for read_and_encode, from a verification record (None: no prints)."""
    return None if not rec else (int(rec["keypoints"]), int(rec["side"]))


def _labels_for(ids: np.ndarray, table: pa.Table) -> np.ndarray:
    """The label of each id, from an items table."""
    tid = table.column("id").to_numpy().astype(np.int64)
    order = np.argsort(tid, kind="stable")
    labels = np.asarray(table.column("label").to_pylist(), dtype=object)[order]
    return labels[np.searchsorted(tid[order], np.asarray(ids, dtype=np.int64))]


class _ShaLookup(Mapping[str, str]):
    """sha256 -> "id N, label 'x', source" for the items table.  Built on first use (an import of
    vectors without image hashes never needs it) and without formatting N descriptions (1M items:
    a dict of row numbers; a description is formatted only for a hit)."""

    def __init__(self, items: pa.Table) -> None:
        self._items = items
        self._rows: dict[str, int] | None = None

    @property
    def _row(self) -> dict[str, int]:
        if self._rows is None:
            self._rows = {sha: i for i, sha in enumerate(self._items.column("sha256").to_pylist()) if sha}
        return self._rows

    def __getitem__(self, sha: str) -> str:
        i = self._row[sha]
        it = self._items
        return f"id {it.column('id')[i].as_py()}, label {it.column('label')[i].as_py()!r}, " \
               f"{it.column('source')[i].as_py()}"

    def __contains__(self, sha: object) -> bool:
        return bool(sha) and sha in self._row

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)


def _index_bytes(index: Any) -> float:
    try:
        return float(index.ntotal) * idx.memory_bytes_per_vector(index)
    except Exception:  # noqa: BLE001 - unknown index types: assume big (change in place)
        return float("inf")


_OWN_FILE = re.compile(r"^(manifest\.json|\.lock|\.tmp-.*)$|" + _GEN_FILE.pattern)


def gallery_model(path: str | os.PathLike) -> Path | None:
    """The model file a gallery was built with, found by the fingerprint its manifest records (among the
    default model, the file it recorded and the shipped models); None when it cannot be found here or the
    manifest cannot be read (opening the gallery then says what is wrong)."""
    import encoders

    try:
        enc = _read_manifest(Path(path))["encoder"]
    except GalleryError:
        return None
    return encoders.model_for_fingerprint(enc.get("fingerprint"), enc.get("path"))


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
