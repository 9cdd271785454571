"""The gallery side of self-calibration: probes kept as generation files, re-measured on every write.

The measurement itself (simulated captures, leave one type out, the FPIR table) is in selfcal.py;
this module stores the probes beside each generation and calls it from the commit.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import selfcal
from .atomic import atomic_write
from .errors import GalleryCorruptError
from .generations import _StateView
from .ingest import Batch

if TYPE_CHECKING:
    from .gallery import AddResult
    from .state import State as _State


# Per-probe arrays kept beside the probes file: local maps for a gallery that re-ranks; for one that verifies,
# each capture's grey page (PNG) and the deltas its last measurement verified (by candidate ids).
# Attribute -> (ndim, dtype).
_PROBE_ROWS = {"local": (3, np.float16), "pages": (1, object), "verified": (3, np.float64)}
# Maps and pages never change once made: they are kept in append-only segments (manifest key
# probes_<attr>_segments, a list of {"file", "rows"}; each file holds its probes' item ids beside their rows),
# so a write stores only the new probes' rows, not every probe's again (39 MB of pages at 300 types).
# The remembered deltas are small and new after every measurement: probes-N.verified.npy, every generation.
_SEGMENTED = ("local", "pages")
MAX_PROBE_SEGMENTS = 16  # more, or more dead rows than live ones: the live rows are written as one segment


def _write_rows(fh: Any, rows: np.ndarray) -> None:
    np.save(fh, rows, allow_pickle=False)


def _write_segment(fh: Any, attr: str, item_ids: np.ndarray, rows: np.ndarray) -> None:
    if attr == "pages":
        col, meta = pa.array(list(rows), pa.binary()), {}
    else:
        rows = np.ascontiguousarray(rows, dtype=_PROBE_ROWS[attr][1])
        col = pa.array([r.tobytes() for r in rows], pa.binary())
        meta = {b"shape": json.dumps(list(rows.shape[1:])).encode()}
    pq.write_table(pa.table({"item_id": pa.array(np.asarray(item_ids, np.int64), pa.int64()), attr: col},
                            metadata=meta), fh)


def _read_segments(root: Path, attr: str, segments: list[dict[str, Any]], item_ids: np.ndarray) -> np.ndarray:
    """The rows of ``item_ids``' probes, in their order, from ``segments`` (which may hold dead probes' rows)."""
    want = set(np.asarray(item_ids).tolist())
    ids, parts, shape = [], [], None
    for seg in segments:
        t = pq.read_table(root / seg["file"])
        if t.schema.names != ["item_id", attr] or len(t) != int(seg["rows"]):
            raise ValueError(f"{seg['file']}: not a probe {attr} segment of {seg['rows']} rows "
                             f"(columns {t.schema.names}, {len(t)} rows)")
        seg_ids = t.column("item_id").to_numpy()
        keep = np.flatnonzero(np.isin(seg_ids, list(want)))
        ids.append(seg_ids[keep])
        vals = t.column(attr).take(pa.array(keep)).to_pylist()
        if attr == "pages":
            out = np.empty(len(vals), dtype=object)
            out[:] = vals
        else:
            shape = tuple(json.loads((t.schema.metadata or {}).get(b"shape", b"null")) or ())
            out = np.frombuffer(b"".join(vals), dtype=_PROBE_ROWS[attr][1]).reshape(len(vals), *shape)
        parts.append(out)
    got = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    if not np.array_equal(got, np.asarray(item_ids, np.int64)):
        raise ValueError(f"its {attr} segments hold rows for {len(got)} of the {len(item_ids)} probes, or in another "
                         "order")
    if not parts:
        return np.empty(0, dtype=object) if attr == "pages" else np.zeros((0, *(shape or ())), _PROBE_ROWS[attr][1])
    return np.concatenate(parts)


def _read_rows(path: Path) -> np.ndarray:
    """A per-probe file of one generation, as written before maps and pages were kept in segments."""
    if path.suffix == ".parquet":
        t = pq.read_table(path)
        if t.schema.names != ["png"]:
            raise ValueError(f"not a probe pages file (columns {t.schema.names})")
        out = np.empty(len(t), dtype=object)
        out[:] = t.column("png").to_pylist()
        return out
    rows = np.load(path, mmap_mode="r", allow_pickle=False)
    if path.name.endswith(".pages.npy"):  # written before probes kept only their grey pages: packed prints
        from encoders import pageprint

        fixed = pageprint.capture_row_bytes(0)
        kp = (rows.shape[1] - fixed) // (pageprint.capture_row_bytes(1) - fixed) if rows.ndim == 2 else 0
        out = np.empty(len(rows), dtype=object)
        for i, row in enumerate(rows):
            p = pageprint.unpack_capture(np.asarray(row), kp)
            out[i] = pageprint.StoredCapture.of_image(p.gray).png
        return out
    return rows


class SelfCalibrationMixin:
    """Probes and the self-calibration record of a gallery (mixed into :class:`indexer.gallery.Gallery`)."""

    path: Path
    _s: "_State"

    def probes(self) -> selfcal.Probes:
        """The self-calibration probes of the current generation (empty when it has none)."""
        return self._stored_probes(self._s.manifest.get("self_calibration") or {})

    def _probed_labels(self) -> set[str]:
        # labels only: every add asks, and the per-probe files (capture pages, maps) are large
        return set(self._stored_probes(self._s.manifest.get("self_calibration") or {}, rows=False).labels.tolist())

    def _stored_probes(self, rec: dict[str, Any], dim: int | None = None, rows: bool = True) -> selfcal.Probes:
        """The probes ``rec`` names; with ``rows``, also their per-probe files (_PROBE_ROWS)."""
        dim = self.dim if dim is None else dim
        name = rec.get("probes_file")
        if not name:
            return selfcal.Probes.empty(dim)
        try:
            probes = selfcal.Probes.read(self.path / name, dim)
            for attr, (ndim, dtype) in (_PROBE_ROWS.items() if rows else ()):
                file, segs = rec.get(f"probes_{attr}_file"), rec.get(f"probes_{attr}_segments")
                if segs:
                    vals = _read_segments(self.path, attr, segs, probes.item_ids)
                elif file:
                    vals = _read_rows(self.path / file)
                else:
                    continue
                if vals.ndim != ndim or len(vals) != len(probes) or vals.dtype != dtype:
                    raise ValueError(f"{file or attr + ' segments'} hold {vals.shape} {vals.dtype} rows for "
                                     f"{len(probes)} probes")
                setattr(probes, attr, vals)
            return probes
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise GalleryCorruptError(f"{self.path}: self-calibration probes {name} unreadable ({exc}); "
                                      "run `indexer calibrate` to measure them again") from None

    def _remeasure(self, state: _State, gen: int, rec: dict[str, Any], added: selfcal.Probes | None,
                   result: AddResult | None) -> dict[str, Any]:
        """The new generation's self-calibration record (writes its probes file if the probes changed)."""
        settings = selfcal.Settings.from_dict(rec.get("settings"))
        old = self._stored_probes(rec, int(state.manifest["encoder"]["dim"]))
        probes = old.live(state.ids)
        changed = len(probes) != len(old)
        if added is not None and len(added):
            probes = probes.concat(added.live(state.ids))
            changed = True
        if probes.local is not None and state.rerank is None:  # the gallery stopped re-ranking: maps unused
            probes.local = None
            changed = True
        if probes.pages is not None and state.verify is None:  # the gallery stopped verifying: prints unused
            probes.pages = None
            changed = True
        from encoders import pageprint

        if probes.verified is not None and (probes.pages is None or rec.get("verify_memo") != pageprint.memo_tag(pageprint.comparison_of(state.verify))):
            probes.verified = None  # remembered under other verification settings: verify afresh
        n_labels = len(set(state.labels.tolist()))
        try:
            new = selfcal.measure(_StateView(state, str(self.path)), probes, len(state.ids), n_labels, settings,
                                  state.manifest["encoder"])
        except Exception as exc:  # a failed measurement must not block the write: recorded, the model table is used
            new = {"enabled": True, "version": selfcal.VERSION, "settings": settings.to_dict(), "status": "failed",
                   "reason": f"self-calibration failed: {type(exc).__name__}: {exc}", "table": []}
        new["probes_file"] = rec.get("probes_file")
        for attr in _PROBE_ROWS:
            new[f"probes_{attr}_file"] = rec.get(f"probes_{attr}_file")
        for attr in _SEGMENTED:
            new[f"probes_{attr}_segments"] = rec.get(f"probes_{attr}_segments")
        if changed:
            name = f"probes-{gen:04d}.parquet"
            atomic_write(self.path / name, probes.write, sync_dir=False)
            new["probes_file"] = name
            for attr in _SEGMENTED:
                new[f"probes_{attr}_file"] = None
                new[f"probes_{attr}_segments"] = self._probe_segments(gen, attr, rec, probes, n_kept=len(probes) - (
                    len(added.live(state.ids)) if added is not None and len(added) else 0))
        rows = probes.verified
        new["probes_verified_file"] = None if rows is None else f"probes-{gen:04d}.verified.npy"
        if rows is not None:
            atomic_write(self.path / new["probes_verified_file"],
                         lambda fh, rows=np.asarray(rows, np.float64): _write_rows(fh, rows), sync_dir=False)
        new["probe_seconds"] = round(added.seconds, 3) if added is not None else 0.0
        if result is not None:
            if added is not None and added.problems:
                result.notes += added.problems
            measurable = [r for r in new.get("table") or [] if r.get("measurable")]
            result.notes.append(
                f"self-calibration: {new.get('status')}, {len(probes)} probes of {len(probes.types)} of {n_labels} types"
                + (f", FPIR {measurable[0]['fpir']:g}..{measurable[-1]['fpir']:g} measurable" if measurable else
                   f" ({new.get('reason')})")
                + f"; +{new['probe_seconds'] + float(new.get('seconds') or 0):.1f} s")
        return new

    def _probe_segments(self, gen: int, attr: str, rec: dict[str, Any], probes: selfcal.Probes,
                        n_kept: int) -> list[dict[str, Any]] | None:
        """The segments holding ``probes``' ``attr`` rows: the old generation's (its first ``n_kept`` probes are
        the old ones still live), plus one for the probes added; or all rows as one segment, when the old ones
        were kept in a single file (an older gallery), when there are too many segments, or more dead rows
        than live ones."""
        rows = getattr(probes, attr)
        if rows is None or not len(probes):
            return None
        old = list(rec.get(f"probes_{attr}_segments") or []) if not rec.get(f"probes_{attr}_file") else []
        held = sum(int(s["rows"]) for s in old)
        start = n_kept if (old or not n_kept) else 0  # rows kept in an older single file: all stored anew
        if start and (len(old) + 1 > MAX_PROBE_SEGMENTS or held + len(probes) - n_kept > 2 * len(probes)):
            old, start = [], 0
        if start == len(probes):
            return old
        name = f"probes-{gen:04d}.{attr}.parquet"
        ids, part = probes.item_ids[start:], rows[start:]
        atomic_write(self.path / name, lambda fh: _write_segment(fh, attr, ids, part), sync_dir=False)
        return old + [{"file": name, "rows": int(len(ids))}]

    def set_self_calibration(self, enable: bool = True, settings: selfcal.Settings | None = None,
                             encoder: Any = None, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Measure the self-calibration afresh (or turn it off), as a new generation; returns the record.

        Probes are simulated from each type's first exemplar whose recorded ``source`` file can
        still be read (imported vectors have none: their types are not probed, said so in the
        record's notes).  Use it on galleries built without self-calibration, or to change its
        settings (capture preset, probes per type).
        """
        if not enable:
            with self._locked():
                self._reload_if_changed()
                self._commit(None, None, {"self_calibration": {"enabled": False}})
            return {"enabled": False}
        enc = self._encoder_for_write(encoder)
        self._check_encoder(enc)
        settings = settings or selfcal.Settings.from_dict((self._s.manifest.get("self_calibration") or {}).get("settings"))
        t0 = time.perf_counter()
        labels = self._s.labels.astype(str)
        sources = self._s.items.column("source").to_pylist()
        shas = self._s.items.column("sha256").to_pylist()
        firsts: dict[str, list[int]] = {}
        for row, lab in enumerate(labels.tolist()):
            firsts.setdefault(lab, []).append(row)
        per = selfcal.captures_per_type(len(firsts), settings)
        chosen = []
        problems = []
        for lab, rows in sorted(firsts.items()):
            if len(chosen) >= settings.max_types:
                break
            row = next((r for r in rows if sources[r] and os.path.isfile(str(sources[r]))), None)
            if row is None:
                problems.append(f"{lab!r}: no exemplar with a readable source file; type not probed")
                continue
            chosen.append((int(self._s.ids[row]), lab, str(sources[row]), shas[row] or str(sources[row])))
        probes = selfcal.make_probes(chosen, enc, per, settings, progress, prints=_prints_of(self._s.verify))
        probes.problems = problems + probes.problems
        probes.seconds = time.perf_counter() - t0
        from .gallery import AddResult

        result = AddResult(generation=self.generation)
        with self._locked():
            self._reload_if_changed()
            base = {"enabled": True, "settings": settings.to_dict()}  # no probes_file: these probes replace the old
            self._commit(None, None, {"self_calibration": base}, probes=probes, result=result)
        self.last_result = result
        return self.self_calibration or {}


def _prints_of(rec: dict[str, Any] | None) -> tuple[int, int] | None:
    return None if not rec else (int(rec["keypoints"]), int(rec["side"]))


def _probe_batch(batch: Batch, encoder: Any, probed: set[str], settings: selfcal.Settings,
                 result: AddResult | None, n_types: int | None = None,
                 verify: dict[str, Any] | None = None) -> selfcal.Probes:
    """Probes (simulated captures) of the first new exemplar of each type not probed yet.  Outside the
    lock (slow); their ``item_ids`` are positions in ``keys`` until :func:`_probes_with_ids`."""
    t0 = time.perf_counter()
    labels = list(batch.labels)
    n_types = n_types if n_types is not None else len(set(labels) | probed)
    per = selfcal.captures_per_type(n_types, settings)
    room = max(0, settings.max_types - len(probed))
    chosen, keys, seen = [], [], set(probed)
    for i, lab in enumerate(labels):
        if lab in seen or not batch.sha256[i] or len(chosen) >= room:
            continue
        seen.add(lab)
        chosen.append((len(keys), lab, batch.sources[i], batch.sha256[i]))
        keys.append(batch.sha256[i])
    probes = selfcal.make_probes(chosen, encoder, per, settings, prints=_prints_of(verify))
    probes.seconds = time.perf_counter() - t0
    probes.keys = keys
    return probes


def _probes_with_ids(probes: selfcal.Probes | None, batch: Batch, ids: np.ndarray) -> selfcal.Probes | None:
    """Probes keyed by the item ids their exemplars got (an exemplar skipped as a duplicate loses its probes)."""
    if probes is None:
        return None
    by_sha = {sha: int(i) for sha, i in zip(batch.sha256, ids) if sha}
    keys = probes.keys
    out_ids = np.asarray([by_sha.get(keys[int(k)], -1) for k in probes.item_ids], dtype=np.int64)
    keep = out_ids >= 0
    return selfcal.Probes(out_ids[keep], probes.labels[keep], probes.feats[keep], list(probes.problems), probes.seconds,
                          local=None if probes.local is None else probes.local[keep],
                          pages=None if probes.pages is None else probes.pages[keep])
