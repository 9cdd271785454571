"""The gallery side of self-calibration: probes kept as generation files, re-measured on every write.

The measurement itself (simulated captures, leave one type out, the FPIR table) is in selfcal.py;
this module stores the probes beside each generation and calls it from the commit.
"""
from __future__ import annotations

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


# Per-probe arrays kept beside the probes file (probes-N.<attr>.npy, or .parquet; manifest key
# probes_<attr>_file): local maps for a gallery that re-ranks; for one that verifies, each capture's grey page
# (PNG) and the deltas its last measurement verified (by candidate ids).  Attribute -> (ndim, dtype).
_PROBE_ROWS = {"local": (3, np.float16), "pages": (1, object), "verified": (3, np.float64)}
_REWRITTEN = ("verified",)  # small, and new after every measurement: written with every generation
_SUFFIX = {"pages": "parquet"}  # capture pages are PNG bytes of varying length: a Parquet binary column


def _write_rows(fh: Any, rows: np.ndarray) -> None:
    if rows.dtype == object:
        pq.write_table(pa.table({"png": pa.array(list(rows), pa.binary())}), fh)
    else:
        np.save(fh, rows, allow_pickle=False)


def _read_rows(path: Path) -> np.ndarray:
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
                file = rec.get(f"probes_{attr}_file")
                if file:
                    rows = _read_rows(self.path / file)
                    if rows.ndim != ndim or len(rows) != len(probes) or rows.dtype != dtype:
                        raise ValueError(f"{file} holds {rows.shape} {rows.dtype} rows for {len(probes)} probes")
                    setattr(probes, attr, rows)
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

        if probes.verified is not None and (probes.pages is None or rec.get("verify_memo") != pageprint.memo_tag()):
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
        if changed:
            name = f"probes-{gen:04d}.parquet"
            atomic_write(self.path / name, probes.write, sync_dir=False)
            new["probes_file"] = name
        for attr, (_, dtype) in _PROBE_ROWS.items():
            if changed or attr in _REWRITTEN:
                new[f"probes_{attr}_file"] = None
                if getattr(probes, attr) is not None:
                    new[f"probes_{attr}_file"] = f"probes-{gen:04d}.{attr}.{_SUFFIX.get(attr, 'npy')}"
                    rows = np.asarray(getattr(probes, attr), dtype=dtype)
                    atomic_write(self.path / new[f"probes_{attr}_file"],
                                 lambda fh, rows=rows: _write_rows(fh, rows), sync_dir=False)
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
