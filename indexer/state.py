"""A gallery generation on disk -> in memory: the manifest, then the files it names.

Readers only ever reach gallery files through the manifest (the commit point, see gallery.py);
a reader racing a writer that prunes old generations re-reads the newer manifest.  Big index
files are memory-mapped read-only where FAISS allows (index.read_index), so opening a
million-vector gallery costs a few hundred ms and shares pages between processes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import index as idx
from . import items as items_mod
from . import specs
from .errors import GalleryCorruptError, GalleryError, NotAGalleryError
from .exact import ExactStore, LocalStore, PagePrintStore
from .integrity import GENERATION_FILE, PROBE_FILE_KEYS, PROBE_SEGMENT_KEYS, Integrity, validate_manifest

FORMAT_VERSION = 2  # newest understood; a gallery a version-1 reader can serve (flat, no extras) is written as 1
MANIFEST = "manifest.json"
_GEN_FILE = GENERATION_FILE  # every file a generation may name (and the only ones a writer prunes)
# Opening maps (instead of reads) index files at least this big (see Gallery.open).
MMAP_MIN_BYTES = 64 << 20


@dataclass
class State:
    manifest: dict[str, Any]
    index: Any  # faiss.Index
    items: pa.Table
    ids: np.ndarray  # items ids, sorted ascending
    labels: np.ndarray  # object array, aligned with ids
    plan: specs.Plan = field(default_factory=lambda: specs.flat_plan("flat"))
    dead: idx.Tombstones | None = None  # removed ids still inside an index that cannot remove
    exact: ExactStore | None = None
    mapped: bool = False  # index memory-mapped read-only: never add to it
    integrity: Integrity | None = None  # checks of the files against the manifest's checksums
    local: LocalStore | None = None  # each exemplar's local map, when the gallery re-ranks (see rerank)
    pages: PagePrintStore | None = None  # each exemplar's page print, when the gallery verifies (see verify)

    @classmethod
    def of(cls, manifest: dict[str, Any], index: Any, items: pa.Table, exact: ExactStore | None = None,
           mapped: bool = False, local: LocalStore | None = None, pages: PagePrintStore | None = None) -> "State":
        items = items.sort_by("id")
        ids = items.column("id").to_numpy().astype(np.int64)
        dead = None
        if index is not None and index.ntotal > len(ids):
            stored = idx.index_ids(index)
            dead_ids = stored[~np.isin(stored, ids, assume_unique=False)]
            dead = idx.Tombstones(dead_ids) if len(dead_ids) else None
        return cls(manifest, index, items, ids, np.asarray(items.column("label").to_pylist(), dtype=object),
                   specs.Plan.from_dict(manifest.get("index")), dead, exact, mapped, local=local, pages=pages)

    @property
    def rerank(self) -> dict[str, Any] | None:
        """The manifest's re-ranking settings (k, weight) when this generation holds every exemplar's
        local map, else None (a search then answers with the cosine alone)."""
        rec = self.manifest.get("local")
        return rec if rec and self.local is not None else None

    @property
    def verify(self) -> dict[str, Any] | None:
        """The manifest's verification settings (keypoints, side, weight) when this generation holds
        every exemplar's page print, else None."""
        rec = self.manifest.get("pages")
        return rec if rec and self.pages is not None else None

    @cached_property
    def by_label(self) -> dict[str, np.ndarray]:
        """Live ids of each label, labels sorted: computed once per generation, so label counts and
        label-filtered searches do not re-group a large gallery on every call."""
        if not len(self.ids):
            return {}
        names = self.labels.astype(str)
        order = np.argsort(names, kind="stable")
        uniq, starts = np.unique(names[order], return_index=True)
        return {str(lab): self.ids[order[a:b]] for lab, a, b in zip(uniq, starts, [*starts[1:], len(order)])}


def generation_files(m: dict[str, Any]) -> list[str]:
    out = [m[k] for k in ("index_file", "items_file") if k in m]
    for seg in m.get("exact") or []:
        out += [seg["vectors"], seg["ids"]]
    for key in ("local", "pages"):
        for seg in (m.get(key) or {}).get("segments") or []:
            out += [seg["vectors"], seg["ids"]]
    sc = m.get("self_calibration") or {}
    for key in PROBE_FILE_KEYS:
        if sc.get(key):
            out.append(sc[key])
    for key in PROBE_SEGMENT_KEYS:
        out += [seg["file"] for seg in sc.get(key) or []]
    return out


def open_exact(path: Path, m: dict[str, Any]) -> ExactStore | None:
    if not m.get("exact"):
        return None
    return ExactStore.open(path, m["exact"], int(m["encoder"]["dim"]))


def open_local(path: Path, m: dict[str, Any]) -> LocalStore | None:
    rec = m.get("local")
    if not rec:
        return None
    return LocalStore.open(path, rec.get("segments") or [], tuple(int(x) for x in rec["shape"]))


def open_pages(path: Path, m: dict[str, Any]) -> PagePrintStore | None:
    rec = m.get("pages")
    if not rec:
        return None
    from encoders import pageprint

    try:
        pageprint.comparison_of(rec)
    except ValueError as exc:
        raise GalleryError(f"{path}: {exc}") from None
    return PagePrintStore.open(path, rec.get("segments") or [], (int(rec["row_bytes"]),))


# ---------------------------------------------------------------------- loading helpers
def read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / MANIFEST
    if not path.is_dir():
        raise NotAGalleryError(f"gallery not found: {path} is not a directory (create one with `indexer build`)")
    try:
        text = mpath.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise NotAGalleryError(f"not a gallery: {mpath} does not exist (create one with `indexer build`)") from None
    except UnicodeDecodeError as exc:
        raise GalleryCorruptError(f"{mpath}: not UTF-8 text ({exc.reason} at byte {exc.start}); the manifest is "
                                  f"damaged: try `indexer rollback {path}`") from None
    except OSError as exc:
        raise GalleryCorruptError(f"{mpath}: cannot be read ({exc.strerror or exc})") from None
    try:
        m = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise GalleryCorruptError(f"{mpath}: not valid JSON ({exc}); try `indexer rollback {path}`") from None
    if not isinstance(m, dict) or "format_version" not in m:
        raise GalleryCorruptError(f"{mpath}: not a docretriever gallery manifest (no format_version)")
    fv = m["format_version"]
    if isinstance(fv, int) and not isinstance(fv, bool) and fv > FORMAT_VERSION:
        raise GalleryError(f"{mpath}: gallery format {m['format_version']} is newer than this docretriever "
                           f"understands ({FORMAT_VERSION}); upgrade docretriever")
    missing = [k for k in ("generation", "index_file", "items_file", "encoder", "index_spec") if k not in m]
    if missing:
        raise GalleryCorruptError(f"{mpath}: manifest lacks {missing}")
    validate_manifest(m, str(mpath))
    return m


def try_read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return read_manifest(path)
    except GalleryError:
        return None


def load_state(path: Path, attempts: int = 5, strict: bool = True, mmap: bool | None = False) -> State:
    """Manifest, then the files it names; retried if a writer pruned them between the two reads.

    ``mmap``: True maps the index read-only, None maps it if the file has >= MMAP_MIN_BYTES.
    """
    last: Exception | None = None
    for _ in range(attempts):
        m = read_manifest(path)
        try:
            specs.Plan.from_dict(m.get("index"))  # validated here; the state parses it again
        except Exception as exc:  # a tampered plan: wrong keys or types
            raise GalleryCorruptError(f"{path}: manifest 'index' is not a valid index plan ({exc}); "
                                      f"try `indexer rollback {path}`") from None
        try:
            ipath = path / m["index_file"]
            use_mmap = bool(mmap) if mmap is not None else ipath.stat().st_size >= MMAP_MIN_BYTES
            # files read into memory are checked before FAISS or Arrow parse them; mapped ones meanwhile
            big = {n for n in generation_files(m) if n.endswith(".npy") or (use_mmap and n == m["index_file"])}
            now = [n for n in generation_files(m) if n not in big]
            integrity = Integrity(path, m.get("checksums"), now, sorted(big), strict=strict)
            index = idx.read_index(ipath, True) if use_mmap else idx.read_index(ipath)
            table = items_mod.read(path / m["items_file"])
            exact = open_exact(path, m)
            local = open_local(path, m)
            pages = open_pages(path, m)
        except FileNotFoundError as exc:
            last = exc
            if read_manifest(path).get("generation") != m.get("generation"):
                continue  # a writer moved on meanwhile: read the newer manifest
            break
        except GalleryCorruptError as exc:
            if "rollback" in str(exc):
                raise
            raise GalleryCorruptError(f"{path}: {exc}; try `indexer rollback {path}`") from None
        except Exception as exc:  # faiss raises RuntimeError, pyarrow ArrowInvalid, ...
            raise GalleryCorruptError(f"{path}: cannot read generation {m['generation']} files "
                                      f"({type(exc).__name__}: {exc}); try `indexer rollback {path}`") from None
        dead = int(m.get("tombstones", 0) or 0)
        if strict and (index.ntotal != len(table) + dead or len(table) != int(m.get("count", len(table)))):
            raise GalleryCorruptError(
                f"{path}: {m['index_file']} holds {index.ntotal} vectors, {m['items_file']} {len(table)} rows, "
                f"manifest says {m.get('count')}" + (f" + {dead} tombstones" if dead else "")
                + f"; try `indexer rollback {path}`")
        if strict and index.d != int(m["encoder"]["dim"]):
            raise GalleryCorruptError(f"{path}: {m['index_file']} is {index.d}-d, manifest says "
                                      f"{m['encoder']['dim']}-d")
        state = State.of(m, index, table, exact, use_mmap, local, pages)
        state.integrity = integrity
        return state
    name = getattr(last, "filename", None) or str(last)
    raise GalleryCorruptError(f"{path}: file named by the manifest is missing: {name}; "
                              f"try `indexer rollback {path}`")
