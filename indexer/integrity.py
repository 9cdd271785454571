"""A gallery's files are what its manifest says they are: a schema for the manifest, SHA-256 for the files.

Why: a gallery answers with the vectors it holds.  A flipped byte in the FAISS file gave scores of
1e25 and ACCEPT; two labels' vectors swapped gave confident wrong answers; a manifest naming
``/etc/passwd`` was opened.  Readers therefore refuse a manifest that does not have the expected
shape (types, ranges, file names that stay inside the gallery directory) and refuse files whose
SHA-256 differs from the one the writer recorded, naming the file and suggesting a rollback.

Cost (hashlib SHA-256 reads ~1-2 GB/s): negligible at 10k vectors; at 1M vectors the files are ~72 MB
(IVF-PQ index) + 1 GB (exact vectors).  Files read into memory are checked before use; memory-mapped
ones (>= 64 MiB) are checked in a background thread and every search asks the result first, so a
mismatch stops answers within the time one hash takes, never silently.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Iterable

from encoders.runtime import file_sha256  # noqa: F401  (re-exported: the one file hash of the project)

from .errors import GalleryCorruptError

# The self-calibration record's files: probes, and per-probe local maps, capture pages and remembered deltas
# (maps and pages, written before they were kept in segments); and its lists of segments of maps and pages.
PROBE_FILE_KEYS = ("probes_file", "probes_local_file", "probes_pages_file", "probes_verified_file")
PROBE_SEGMENT_KEYS = ("probes_local_segments", "probes_pages_segments")

__all__ = ["Integrity", "file_sha256", "validate_manifest"]

# Generation files are plain names in the gallery directory: no separators, no "..", no absolute paths.
GENERATION_FILE = re.compile(r"^(index-\d+\.faiss|items-\d+\.parquet|(exact|local|pages)-\d+(\.ids)?\.npy|probes-\d+\.parquet"
                        r"|probes-\d+\.(local|pages|verified)\.npy|probes-\d+\.(local|pages)\.parquet)$")


def _int(m: dict[str, Any], key: str, where: str, lo: int = 0, required: bool = True) -> None:
    if key not in m:
        if required:
            raise GalleryCorruptError(f"{where}: manifest lacks {key!r}")
        return
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise GalleryCorruptError(f"{where}: manifest {key!r} must be an integer >= {lo}, not {v!r}")


def _name(v: Any, key: str, where: str) -> None:
    if not isinstance(v, str) or not GENERATION_FILE.match(v):
        raise GalleryCorruptError(f"{where}: manifest {key!r} names {v!r}, which is not a file of this gallery "
                                  "(generation files are plain names inside the gallery directory)")


def _local_record_ok(rec: Any) -> bool:
    """The re-ranking record's shape: {"k": int >= 2, "weight": number >= 0, "shape": [cells, C], "segments": [...]}."""
    def positive_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x > 0

    if not isinstance(rec, dict):
        return False
    shape, segs, k, w = rec.get("shape"), rec.get("segments"), rec.get("k"), rec.get("weight")
    return (isinstance(segs, list) and all(isinstance(x, dict) for x in segs)
            and isinstance(shape, list) and len(shape) == 2 and all(positive_int(x) for x in shape)
            and positive_int(k) and k >= 2
            and isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0)


def _pages_record_ok(rec: Any) -> bool:
    """The verification record's shape: {"keypoints": int > 0, "side": int > 0, "row_bytes": int > 0,
    "weight": number >= 0, "k": int >= 2, "segments": [...]}, and optionally "comparison": a name."""
    def positive_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x > 0

    if not isinstance(rec, dict):
        return False
    segs, w = rec.get("segments"), rec.get("weight")
    return (isinstance(segs, list) and all(isinstance(x, dict) for x in segs)
            and isinstance(rec.get("comparison", ""), str)
            and all(positive_int(rec.get(key)) for key in ("keypoints", "side", "row_bytes", "k")) and rec["k"] >= 2
            and isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0)


def validate_manifest(m: Any, where: str, nested: bool = False) -> None:
    """Refuse a manifest whose fields do not have the shapes readers rely on (GalleryCorruptError)."""
    if not isinstance(m, dict):
        raise GalleryCorruptError(f"{where}: manifest is not a JSON object")
    _int(m, "format_version", where, 1)
    _int(m, "generation", where, 1)
    for key in ("count", "labels", "tombstones", "next_id"):
        _int(m, key, where, 0, required=False)
    for key in ("index_file", "items_file"):
        _name(m.get(key), key, where)
    enc = m.get("encoder")
    if not isinstance(enc, dict) or not isinstance(enc.get("fingerprint"), str) or not isinstance(enc.get("name"), str):
        raise GalleryCorruptError(f"{where}: manifest 'encoder' must hold a name and a fingerprint, not {enc!r}")
    _int(enc, "dim", where + " encoder", 1)
    if not isinstance(m.get("index_spec"), str):
        raise GalleryCorruptError(f"{where}: manifest 'index_spec' must be a string, not {m.get('index_spec')!r}")
    exact = m.get("exact")
    if exact is not None:
        if not isinstance(exact, list) or not all(isinstance(s, dict) for s in exact):
            raise GalleryCorruptError(f"{where}: manifest 'exact' must be a list of segments, not {exact!r}")
        for seg in exact:
            _name(seg.get("vectors"), "exact.vectors", where)
            _name(seg.get("ids"), "exact.ids", where)
    local = m.get("local")
    if local is not None:
        if not _local_record_ok(local):
            raise GalleryCorruptError(f"{where}: manifest 'local' must hold k >= 2, a weight >= 0, a [cells, channels] "
                                      f"shape and a list of segments, not {local!r}")
    pages = m.get("pages")
    if pages is not None and not _pages_record_ok(pages):
        raise GalleryCorruptError(f"{where}: manifest 'pages' must hold keypoints, side, row_bytes and k >= 2, a "
                                  f"weight >= 0 and a list of segments, not {pages!r}")
    for key in ("local", "pages"):
        for seg in (m.get(key) or {}).get("segments") or []:
            _name(seg.get("vectors"), f"{key}.vectors", where)
            _name(seg.get("ids"), f"{key}.ids", where)
    sc = m.get("self_calibration")
    if sc is not None:
        if not isinstance(sc, dict):
            raise GalleryCorruptError(f"{where}: manifest 'self_calibration' must be an object")
        for key in PROBE_FILE_KEYS:
            if sc.get(key) is not None:
                _name(sc[key], f"self_calibration.{key}", where)
        for key in PROBE_SEGMENT_KEYS:
            segs = sc.get(key)
            if segs is None:
                continue
            if not isinstance(segs, list) or not all(isinstance(x, dict) and isinstance(x.get("rows"), int)
                                                     and x["rows"] >= 0 for x in segs):
                raise GalleryCorruptError(f"{where}: manifest 'self_calibration.{key}' must be a list of "
                                          f"{{file, rows}}, not {segs!r}")
            for x in segs:
                _name(x.get("file"), f"self_calibration.{key}", where)
        if not isinstance(sc.get("table", []), list):
            raise GalleryCorruptError(f"{where}: manifest 'self_calibration.table' must be a list")
    for key in ("calibration", "index", "index_params"):
        if m.get(key) is not None and not isinstance(m[key], dict):
            raise GalleryCorruptError(f"{where}: manifest {key!r} must be an object, not {type(m[key]).__name__}")
    sums = m.get("checksums")
    if sums is not None and (not isinstance(sums, dict)
                             or not all(isinstance(k, str) and isinstance(v, str) for k, v in sums.items())):
        raise GalleryCorruptError(f"{where}: manifest 'checksums' must map file names to hex digests")
    prev = m.get("previous")
    if prev is not None and not nested:
        validate_manifest(prev, where + " (previous generation)", nested=True)


class Integrity:
    """Checks one generation's files against the manifest's checksums: now, or in the background for
    memory-mapped files; :meth:`raise_if_bad` is called before every answer."""

    def __init__(self, root: Path, checksums: dict[str, str] | None, now: Iterable[str],
                 later: Iterable[str] = (), strict: bool = True) -> None:
        self.root = Path(root)
        self.checksums = dict(checksums or {})
        self.error: str | None = None
        self.problems: list[str] = []  # every mismatch found (``strict=False`` goes on after the first)
        self.strict = strict
        self._thread: threading.Thread | None = None
        self.check(now)
        later = [n for n in later if n in self.checksums]
        if later:
            self._thread = threading.Thread(target=self._background, args=(later,), daemon=True,
                                            name="gallery-integrity")
            self._thread.start()

    def check(self, names: Iterable[str]) -> None:
        for name in names:
            want = self.checksums.get(name)
            if want is None:
                continue  # written by a version that recorded no checksum
            got = file_sha256(self.root / name)
            if got != want:
                msg = (f"{self.root / name}: checksum mismatch (SHA-256 {got[:16]}..., the manifest recorded "
                       f"{want[:16]}...): the file changed after it was written; run `indexer rollback "
                       f"{self.root}` to return to the previous generation, or rebuild the gallery")
                self.problems.append(msg)
                self.error = self.error or msg
                if self.strict:
                    raise GalleryCorruptError(msg)

    def _background(self, names: list[str]) -> None:
        try:
            self.check(names)
        except GalleryCorruptError:
            pass  # recorded in self.error; the next answer raises it
        except OSError as exc:
            self.error = f"{self.root}: cannot re-read a gallery file to check it ({exc})"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background check (if any) is done; True if it is."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def raise_if_bad(self) -> None:
        if self.error is not None:
            raise GalleryCorruptError(self.error)


def checksums_for(root: Path, names: Iterable[str], known: dict[str, str] | None) -> dict[str, str]:
    """SHA-256 of each named file: carried over from ``known`` for files already hashed (unchanged
    generation files keep their names), computed for new ones."""
    known = known or {}
    return {n: known[n] if n in known else file_sha256(Path(root) / n) for n in names}
