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

from encoders.decode import DecodeError, read_bytes
from encoders.local import Encoded
from encoders.pages import has_pages, iter_pages_of
from encoders.preprocess import preprocess

from . import items as items_mod
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
    pages: list[int | None] = field(default_factory=list)  # 0-based page in its file (0 for an image)
    feats: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    skipped: list[str] = field(default_factory=list)
    local: np.ndarray | None = None  # (n, cells, C) float16 maps, when the encoder has a local output
    prints: np.ndarray | None = None  # (n, row_bytes) uint8 packed page prints, for a gallery that verifies

    def __len__(self) -> int:
        return len(self.sources)

    def keep(self, mask: Sequence[bool]) -> None:
        """Drop rows where ``mask`` is False (after a re-check under the lock)."""
        m = np.asarray(mask, dtype=bool)
        for name in ("sources", "labels", "sha256", "derived", "pages"):
            setattr(self, name, [v for v, k in zip(getattr(self, name), m) if k])
        self.feats = self.feats[m]
        if self.local is not None:
            self.local = self.local[m]
        if self.prints is not None:
            self.prints = self.prints[m]


def resolve_inputs(paths: Sequence[str | Path], label: str | None, mode: str) -> list[Entry]:
    """Input specs -> entries, read by the one reader every command uses (:mod:`encoders.inputs`).

    With ``label``: every file the specs name gets it: files, directories (every document below),
    globs, ``@lists`` and ``table:column`` specs, as ``retriever run`` reads them.  Without: each
    spec must be a directory, scanned like a register (``mode`` decides labels); anything else is
    refused (a file has no label).  Every spec that names nothing readable is listed at once.
    """
    from encoders.decode import file_problem
    from encoders.inputs import expand_inputs, fs_path

    if mode not in LABEL_MODES:
        raise GalleryError(f"unknown label mode {mode!r}; choose one of {', '.join(LABEL_MODES)}")
    if label is not None:
        check_label(label)
    if not paths:
        raise GalleryError("nothing to add: give at least one file or directory")
    entries: list[Entry] = []
    missing: list[str] = []
    unlabelled: list[str] = []
    for raw in map(str, paths):
        if Path(raw).is_dir():
            if label is None:
                entries += [Entry(img, lab, derived=True) for img, lab in scan_register(raw, mode).entries]
            else:
                images, _ = walk_images(Path(raw))
                if not images:
                    missing.append(f"{raw}: no images in this directory")
                entries += [Entry(img, label) for img in images]
            continue
        if label is None:
            unlabelled.append(raw)
            continue
        for item in expand_inputs([raw]):
            path = fs_path(item.path)
            problem = item.problem or file_problem(path)
            if problem is not None:
                missing.append(f"{item.path}: {problem}")
            else:
                entries.append(Entry(Path(path), label))
    if unlabelled:
        raise LabelError([f"{u}: a file, glob or list needs --label (only directories give labels from their "
                          "folders)" for u in unlabelled], "no label for these inputs")
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
                    progress: Callable[[int], None] | None = None, local: bool = False,
                    prints: tuple[int, int] | None = None) -> Batch:
    """Hash, de-duplicate (against ``known`` key -> description, and within the batch), decode, encode.

    Every page of a multi-page file (TIFF, PDF) is a row of its own (:mod:`encoders.pages` reads
    them as ``retriever run`` does), keyed by :func:`items.page_key`.  ``local``: also keep each row's
    local map (for a gallery that re-ranks; same forward pass).  ``prints`` (keypoints, side): also
    each row's packed page print (for a gallery that verifies; the page is then decoded at twice
    ``side`` and the encoder's input made from that decode).  Raises
    :class:`BadImagesError` listing every unreadable input and page; nothing is returned then.
    """
    batch = Batch(feats=np.zeros((0, encoder.dim), dtype=np.float32))
    seen: dict[str, str] = {}
    bad: list[str] = []
    bad_files: set[int] = set()
    buf: list[np.ndarray] = []
    out = Encoded(encoder, local and bool(getattr(encoder, "has_local", False)))  # maps: for re-ranking
    rows: list[np.ndarray] = []  # packed page prints, for verifying
    if prints is not None:
        from encoders import pageprint
    decode_hw = encoder.input_size if prints is None else pageprint.decode_hw(encoder.input_size, prints[1])

    def flush() -> None:
        if buf and not bad:  # once something is bad the batch is void: keep decoding, stop encoding
            out.add(np.stack(buf))
        buf.clear()

    for n, e in enumerate(entries):
        try:
            data = read_bytes(e.path)
        except DecodeError as exc:
            bad.append(str(exc))
            bad_files.add(n)
            continue
        finally:
            if progress is not None:
                progress(1)
        sha = hashlib.sha256(data).hexdigest()
        resolved = str(e.path.resolve())
        # a single image already registered is skipped before it is decoded; pages are known one by one
        pages = iter_pages_of(data, str(e.path), decode_hw) if has_pages(data, str(e.path)) else \
            iter([(0, None)])
        for page, img in pages:  # lazily: a 300-page TIFF is never in memory at once
            key = items_mod.page_key(sha, page)
            shown = items_mod.page_source(str(e.path), page)
            if key in known:
                batch.skipped.append(f"{shown}: same image bytes already registered ({known[key]}); skipped")
                continue
            if key in seen:
                batch.skipped.append(f"{shown}: same image bytes as {seen[key]} in this batch; skipped")
                continue
            if img is None:
                img = next(iter_pages_of(data, str(e.path), decode_hw))[1]
            if isinstance(img, DecodeError):
                bad.append(str(img))
                bad_files.add(n)
                continue
            seen[key] = shown
            batch.sources.append(items_mod.page_source(resolved, page))
            batch.labels.append(e.label)
            batch.sha256.append(key)
            batch.derived.append(e.derived)
            batch.pages.append(page)
            buf.append(preprocess(img, encoder.contract))
            if prints is not None and not bad:
                rows.append(pageprint.pack(pageprint.of_image(img, prints[0], side=prints[1]), prints[0]))
            if len(buf) >= CHUNK:
                flush()
    flush()
    if bad:
        pages = f" ({len(bad)} pages)" if len(bad) > len(bad_files) else ""
        raise BadImagesError(bad, f"{len(bad_files)} of {len(entries)} images could not be read{pages}; "
                                  "nothing was added")
    batch.feats, batch.local = out.result()
    if prints is not None:
        batch.prints = np.stack(rows) if rows else np.zeros((0, pageprint.row_bytes(prints[0])), np.uint8)
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
