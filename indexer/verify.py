"""Consistency check of a gallery: files agree with each other, and stored vectors are reproducible.

Why re-encode a sample: it catches a gallery whose vectors no longer match what its encoder
produces (wrong model file, changed preprocessing, bit rot) — the failure that silently ruins
retrieval.  Sources that were moved, deleted or changed since registration are noted, not
counted as problems: the gallery does not own them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from encoders.decode import DecodeError, read_bytes
from encoders.preprocess import preprocess

from . import index as idx
from .atomic import TMP_PREFIX
from .gallery import Gallery
from .state import _GEN_FILE, MANIFEST, generation_files as _generation_files

MAP_TOLERANCE = 1e-3  # mean cell cosine of a float16 map against its re-encoding
COSINE_TOLERANCE = 1e-4  # re-encoded vs stored vector: cosine must be >= 1 - this
NORM_TOLERANCE = 1e-3


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reencoded: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(gallery: Gallery, encoder: Any = None, sample: int = 20, seed: int = 0) -> VerifyReport:
    """Check ``gallery``; with ``encoder``, re-encode up to ``sample`` existing sources."""
    rep = VerifyReport()
    m = gallery.manifest
    items = gallery.items
    index = gallery.index
    item_ids = items.column("id").to_numpy()
    try:
        stored_ids, vecs = gallery.stored_vectors()
    except Exception as exc:  # noqa: BLE001 - a broken exact store is one more problem to list
        rep.problems.append(f"cannot read the stored vectors: {exc}")
        stored_ids, vecs = idx.index_ids(index), np.zeros((0, index.d), np.float32)
    dead = int(m.get("tombstones", 0) or 0)
    tomb = f" + {dead} tombstones" if dead else ""

    if len(item_ids) + dead != index.ntotal:
        rep.problems.append(f"{m['items_file']} has {len(item_ids)} rows{tomb} but {m['index_file']} {index.ntotal} "
                            "vectors")
    if m.get("count", 0) + dead != index.ntotal:
        rep.problems.append(f"{MANIFEST} says count {m.get('count')}{tomb}, index holds {index.ntotal}")
    if dead and idx.can_remove(index):
        rep.problems.append(f"{MANIFEST} records {dead} tombstones but the {gallery.plan.type} index removes ids")
    if len(np.unique(item_ids)) != len(item_ids):
        rep.problems.append(f"{m['items_file']} has duplicate ids")
    if len(np.unique(stored_ids)) != len(stored_ids):
        rep.problems.append(f"{m['index_file']} has duplicate ids")
    only_items = sorted(set(item_ids.tolist()) - set(stored_ids.tolist()))
    only_index = sorted(set(stored_ids.tolist()) - set(item_ids.tolist()))
    if only_items:
        rep.problems.append(f"ids in {m['items_file']} but not in {m['index_file']}: {only_items[:20]}")
    if only_index and len(only_index) != dead:  # ids only in the index are tombstones, if counted
        rep.problems.append(f"ids in {m['index_file']} but not in {m['items_file']}: {only_index[:20]}"
                            + (f" ({dead} tombstones recorded)" if dead else ""))
    n_labels = len(set(items.column("label").to_pylist()))
    if m.get("labels") != n_labels:
        rep.problems.append(f"{MANIFEST} says {m.get('labels')} labels, {m['items_file']} has {n_labels}")
    if len(item_ids) and int(item_ids.max()) >= int(m.get("next_id", 0)):
        rep.problems.append(f"{MANIFEST} next_id {m.get('next_id')} is not above the largest id {int(item_ids.max())} "
                            "(ids could be reused)")
    if index.d != m["encoder"]["dim"]:
        rep.problems.append(f"{m['index_file']} is {index.d}-d, manifest says {m['encoder']['dim']}-d")
    if not idx.is_supported_spec(str(m.get("index_spec"))):
        rep.problems.append(f"unknown index spec {m.get('index_spec')!r}")
    exact_ids = gallery.exact_ids()
    if m.get("exact") and exact_ids is not None:
        missing = sorted(set(item_ids.tolist()) - set(exact_ids.tolist()))
        if missing:
            rep.problems.append(f"exact vector store lacks ids {missing[:20]}")
    if m.get("local"):
        local_ids = gallery.local_ids()
        if local_ids is None:
            rep.problems.append("the manifest names a local-map store that could not be opened")
        else:
            missing = sorted(set(item_ids.tolist()) - set(local_ids.tolist()))
            if missing:
                rep.problems.append(f"local-map store lacks ids {missing[:20]} (re-ranking needs every exemplar's map)")
    if len(vecs):
        norms = np.linalg.norm(vecs, axis=1)
        bad = stored_ids[np.abs(norms - 1.0) > NORM_TOLERANCE]
        if bad.size:
            rep.problems.append(f"vectors not unit length for ids {bad[:20].tolist()}")

    rep.problems += gallery.integrity_problems()
    if not m.get("checksums"):
        rep.notes.append("the manifest records no checksums (written by an older docretriever): files not checked")
    _check_self_calibration(gallery, m, item_ids, rep)
    prev = m.get("previous") or {}
    referenced = set(_generation_files(m)) | set(_generation_files(prev))
    for p in sorted(gallery.path.iterdir()):
        if (_GEN_FILE.match(p.name) or p.name.startswith(TMP_PREFIX)) and p.name not in referenced:
            rep.notes.append(f"leftover file from an interrupted write: {p.name} (the next write removes it)")
    for name in _generation_files(prev):
        if not (gallery.path / name).is_file():
            rep.notes.append(f"previous generation file {name} is missing (rollback impossible)")

    if sample > 0 and len(item_ids):
        _reencode(gallery, encoder, sample, seed, dict(zip(stored_ids.tolist(), range(len(stored_ids)))), vecs, rep)
    return rep


def _check_self_calibration(gallery: Gallery, m: dict[str, Any], item_ids: np.ndarray, rep: VerifyReport) -> None:
    """The self-calibration's probes exist, belong to live exemplars under their labels, and its table
    was measured with the gallery's model (a table from elsewhere would be refused at use anyway)."""
    rec = m.get("self_calibration") or {}
    if not rec.get("enabled"):
        return
    fp = (rec.get("encoder") or {}).get("fingerprint")
    if fp and fp != m["encoder"]["fingerprint"]:
        rep.problems.append(f"self-calibration table was measured with model fingerprint {fp}, the gallery's is "
                            f"{m['encoder']['fingerprint']} (run `indexer calibrate`)")
    if not rec.get("probes_file"):
        if rec.get("status") == "measured":
            rep.problems.append("self-calibration says measured but names no probes file")
        return
    try:
        probes = gallery.probes()
    except Exception as exc:  # noqa: BLE001 - a broken probes file is one more problem to list
        rep.problems.append(f"self-calibration probes unreadable: {exc}")
        return
    if len(probes) != int(rec.get("probes", -1)):
        rep.problems.append(f"{rec['probes_file']} holds {len(probes)} probes, the manifest says {rec.get('probes')}")
    dead = sorted(set(probes.item_ids.tolist()) - set(item_ids.tolist()))
    if dead:
        rep.problems.append(f"{rec['probes_file']} has probes of ids no longer in the gallery: {dead[:20]}")
    live = probes.item_ids[np.isin(probes.item_ids, item_ids)]
    if len(live):
        wrong = np.nonzero(gallery.labels_of(live).astype(str) != probes.labels[np.isin(probes.item_ids, item_ids)]
                           .astype(str))[0]
        if len(wrong):
            rep.problems.append(f"{rec['probes_file']}: {len(wrong)} probes carry another label than their exemplar")
    if len(probes.feats) and np.abs(np.linalg.norm(probes.feats, axis=1) - 1.0).max() > NORM_TOLERANCE:
        rep.problems.append(f"{rec['probes_file']}: probe vectors not unit length")


def _reencode(gallery: Gallery, encoder: Any, sample: int, seed: int, row_of: dict[int, int], vecs: np.ndarray,
              rep: VerifyReport) -> None:
    if encoder is None:
        rep.notes.append("no encoder given: stored vectors not re-encoded")
        return
    if encoder.fingerprint != gallery.encoder_info["fingerprint"]:
        rep.problems.append(f"gallery encoder fingerprint {gallery.encoder_info['fingerprint']} differs from the "
                            f"model given ({encoder.fingerprint}); cannot re-encode")
        return
    from pathlib import Path

    from encoders.pages import iter_pages_of

    from .items import file_of, page_key

    items = gallery.items
    ids = items.column("id").to_pylist()
    pages = items.column("page").to_pylist()
    files = [file_of(s, pg) for s, pg in zip(items.column("source").to_pylist(), pages)]
    shas = items.column("sha256").to_pylist()
    existing = [i for i, f in enumerate(files) if shas[i] and Path(f).is_file()]
    if not all(shas):
        rep.notes.append(f"{sum(1 for h in shas if not h)} items were imported as vectors (no image hash); "
                         "not re-encoded")
    gone = sum(1 for i, f in enumerate(files) if shas[i] and not Path(f).is_file())
    if gone:
        rep.notes.append(f"{gone} sources no longer exist; not re-encoded")
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(existing, size=min(sample, len(existing)), replace=False).tolist()) if existing else []
    for i in pick:
        page = pages[i] or 0
        shown = f"{files[i]} page {page}" if page else files[i]
        try:
            data = read_bytes(files[i])  # stats first: a source replaced by a FIFO never blocks verify
        except DecodeError as exc:
            rep.notes.append(f"{shown}: {exc.reason}; not re-encoded")
            continue
        if page_key(hashlib.sha256(data).hexdigest(), page) != shas[i]:
            rep.notes.append(f"{shown}: file changed since it was registered as id {ids[i]}; not re-encoded")
            continue
        img = next((im for pg, im in iter_pages_of(data, files[i], encoder.input_size) if pg == page),
                   DecodeError(files[i], f"page {page} not found"))
        if isinstance(img, DecodeError):
            rep.problems.append(f"id {ids[i]}: {img}")
            continue
        x = preprocess(img, encoder.contract)
        if ids[i] not in row_of:
            continue  # already reported as an id mismatch
        with_map = gallery.reranks and getattr(encoder, "has_local", False)
        fresh, fresh_map = encoder.encode_batch(x[None], local=True) if with_map else (encoder.encode_batch(x[None]),
                                                                                        None)
        fresh = fresh[0]
        cos = float(np.dot(fresh, vecs[row_of[ids[i]]]))
        rep.reencoded += 1
        if cos < 1.0 - COSINE_TOLERANCE:
            rep.problems.append(f"id {ids[i]} ({shown}): re-encoded vector differs from the stored one "
                                f"(cosine {cos:.6f} < {1.0 - COSINE_TOLERANCE})")
        if fresh_map is not None:  # the stored map must be this image's too (float16: a looser tolerance)
            stored = gallery.local_maps([ids[i]])[0].astype(np.float32)
            agree = float(np.mean(np.sum(stored * fresh_map[0].astype(np.float32), axis=1)[
                np.linalg.norm(stored, axis=1) > 0])) if np.any(stored) else 1.0
            if agree < 1.0 - MAP_TOLERANCE:
                rep.problems.append(f"id {ids[i]} ({shown}): re-encoded local map differs from the stored one "
                                    f"(mean cell cosine {agree:.4f} < {1.0 - MAP_TOLERANCE})")
