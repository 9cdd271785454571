"""Inputs -> (source, label, sha256, vector) rows, with every problem collected, not just the first.

Why a batch reads *all* inputs even after one fails: a user fixing a register wants the full
list of bad files in one go, and a batch with any bad file adds nothing (all or nothing).
Each file is read once: its bytes give the sha256 (duplicate detection) and the decoded image.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from encoders.decode import DecodeError, decode_bytes, read_bytes
from encoders.preprocess import preprocess

from .errors import BadImagesError, GalleryError, LabelError
from .labels import LABEL_MODES, check_label, scan_register, walk_images

CHUNK = 32  # images per encoder call: bounds memory (one 128x128 input is 192 KiB) on big registers


@dataclass
class Entry:
    """One image to register.  ``derived``: the label came from the path, not from the user."""

    path: Path
    label: str
    derived: bool = False


@dataclass
class Batch:
    """Encoded, de-duplicated rows ready to store; ``skipped`` says which inputs were dropped and why."""

    sources: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    derived: list[bool] = field(default_factory=list)
    feats: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sources)

    def keep(self, mask: Sequence[bool]) -> None:
        """Drop rows where ``mask`` is False (after a re-check under the lock)."""
        m = np.asarray(mask, dtype=bool)
        for name in ("sources", "labels", "sha256", "derived"):
            setattr(self, name, [v for v, k in zip(getattr(self, name), m) if k])
        self.feats = self.feats[m]


def resolve_inputs(paths: Sequence[str | Path], label: str | None, mode: str) -> list[Entry]:
    """Files and directories -> entries.

    With ``label``: every file given and every image below every directory given gets it.
    Without: directories are scanned like a register (``mode`` decides labels); files are refused.
    """
    if mode not in LABEL_MODES:
        raise GalleryError(f"unknown label mode {mode!r}; choose one of {', '.join(LABEL_MODES)}")
    if label is not None:
        check_label(label)
    if not paths:
        raise GalleryError("nothing to add: give at least one file or directory")
    entries: list[Entry] = []
    missing: list[str] = []
    unlabelled: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            if label is not None:
                images, _ = walk_images(p)
                if not images:
                    missing.append(f"{p}: no images in this directory")
                entries += [Entry(img, label) for img in images]
            else:
                entries += [Entry(img, lab, derived=True) for img, lab in scan_register(p, mode).entries]
        elif p.exists():
            if label is None:
                unlabelled.append(str(p))
            else:
                entries.append(Entry(p, label))
        else:
            from encoders.decode import file_problem

            missing.append(f"{p}: {file_problem(p) or 'file not found'}")
    if unlabelled:
        raise LabelError([f"{u}: a single file needs --label (only directories give labels from their folders)"
                          for u in unlabelled], "no label for these files")
    if missing:
        raise BadImagesError(missing)
    return entries


def file_mode_collisions(entries: Sequence[Entry]) -> list[str]:
    """Derived labels that several files map to (file mode holds one image per label)."""
    seen: dict[str, list[str]] = {}
    for e in entries:
        if e.derived:
            seen.setdefault(e.label, []).append(str(e.path))
    return [f"label {lab!r} from several files: {', '.join(ps)} (rename all but one)"
            for lab, ps in seen.items() if len(ps) > 1]


def read_and_encode(entries: Sequence[Entry], encoder, known: Mapping[str, str],
                    progress: Callable[[int], None] | None = None) -> Batch:
    """Hash, de-duplicate (against ``known`` sha256 -> description, and within the batch), decode, encode.

    Raises :class:`BadImagesError` listing every unreadable input; nothing is returned then.
    """
    batch = Batch(feats=np.zeros((0, encoder.dim), dtype=np.float32))
    seen: dict[str, str] = {}
    bad: list[str] = []
    buf: list[np.ndarray] = []
    feats: list[np.ndarray] = []

    def flush() -> None:
        if buf and not bad:  # once something is bad the batch is void: keep decoding, stop encoding
            feats.append(encoder.encode_batch(np.stack(buf)))
        buf.clear()

    for e in entries:
        try:
            data = read_bytes(e.path)
            sha = hashlib.sha256(data).hexdigest()
            if sha in known:
                batch.skipped.append(f"{e.path}: same image bytes already registered ({known[sha]}); skipped")
                continue
            if sha in seen:
                batch.skipped.append(f"{e.path}: same image bytes as {seen[sha]} in this batch; skipped")
                continue
            bgr = decode_bytes(data, str(e.path), encoder.input_size)
            x = preprocess(bgr, encoder.contract)
        except DecodeError as exc:
            bad.append(str(exc))
            continue
        finally:
            if progress is not None:
                progress(1)
        seen[sha] = str(e.path)
        batch.sources.append(str(e.path.resolve()))
        batch.labels.append(e.label)
        batch.sha256.append(sha)
        batch.derived.append(e.derived)
        buf.append(x)
        if len(buf) >= CHUNK:
            flush()
    flush()
    if bad:
        raise BadImagesError(bad, f"{len(bad)} of {len(entries)} images could not be read; nothing was added")
    if feats:
        batch.feats = np.concatenate(feats).astype(np.float32, copy=False)
    return batch


def near_duplicate_pairs_within(feats: np.ndarray, labels: Sequence[str], bound: float,
                                block: int = 256) -> list[tuple[int, int, float]]:
    """(i, j, cosine) with i < j, cosine >= bound and different labels, among new rows."""
    out: list[tuple[int, int, float]] = []
    n = len(feats)
    lab = np.asarray(labels, dtype=object)
    for s in range(0, n, block):
        sims = feats[s:s + block] @ feats.T
        rows, cols = np.nonzero(sims >= np.float32(bound))
        for r, c in zip(rows, cols):
            i = s + int(r)
            if int(c) > i and lab[i] != lab[c]:
                out.append((i, int(c), float(sims[r, c])))
    return out
