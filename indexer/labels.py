"""How a register directory becomes (image, label) pairs.

``folder`` mode (default): one folder per document type; every image below a folder is an
exemplar of it; the label is the image's folder path relative to the register root with "/"
separators (``register/passport/de/front.jpg`` -> ``passport/de``).  Images lying directly in
the root have no type and are refused.

``file`` mode (the reference DocClassifier convention): one image per label; the label is the
folder parts plus the file stem joined by "_" (``register/id/de.png`` -> ``id_de``).  Two files
that map to one label (``a_b.png`` and ``a/b.jpg``, or ``x.png`` and ``x.jpg``) are refused
rather than one silently overwriting the other.

Directories are walked by the one reader every command uses (:func:`encoders.inputs.walk_files`):
entries sorted, names starting with "." skipped, symbolic links to directories not followed, a
folder that cannot be listed an error.  DOCUMENT_SUFFIXES count (case-insensitive: images, TIFF and
PDF, every page of which becomes an exemplar); other files are ignored.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from encoders.decode import DOCUMENT_SUFFIXES  # the one list for every reader
from encoders.inputs import walk_files

from .errors import BadImagesError, GalleryError, LabelError

LABEL_MODES = ("folder", "file")


@dataclass
class Scan:
    """Result of scanning a directory: (path, label) pairs in a stable order, and what was ignored."""

    entries: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # non-image files


def is_image(path: str | os.PathLike) -> bool:
    """A file the readers take: an image, a TIFF or a PDF (every page of it)."""
    return Path(path).suffix.lower() in DOCUMENT_SUFFIXES


# Labels end up in text tables, JSON, CSV and Parquet; a newline splits a row, a bidirectional
# override reorders what a reader sees (a label can spoof another), and a megabyte label is no name.
MAX_LABEL_CHARS = 512
_BIDI_CONTROLS = {"\u200e", "\u200f", "\u061c", *(chr(c) for c in range(0x202A, 0x202F)),
                  *(chr(c) for c in range(0x2066, 0x206A))}


def check_label(label: str) -> str:
    """A usable label: non-empty, at most MAX_LABEL_CHARS characters, no control or bidirectional
    formatting characters, no surrounding whitespace."""
    if not isinstance(label, str) or not label.strip():
        raise GalleryError(f"label must be a non-empty string, not {label!r}")
    if len(label) > MAX_LABEL_CHARS:
        raise GalleryError(f"label {label[:40]!r}... is {len(label):,} characters long; at most {MAX_LABEL_CHARS}")
    if label != label.strip() or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in label):
        raise GalleryError(f"label {label!r} has surrounding whitespace or control characters")
    bidi = sorted({f"U+{ord(c):04X}" for c in label if c in _BIDI_CONTROLS})
    if bidi:
        raise GalleryError(f"label {label!r} contains bidirectional formatting characters ({', '.join(bidi)}), "
                           "which can make it display as another label")
    return label


def walk_images(root: Path) -> tuple[list[Path], list[Path]]:
    """(documents, other files) below ``root``, sorted, as :func:`encoders.inputs.walk_files` walks.

    A folder that cannot be listed raises :class:`BadImagesError` naming it: a register read in part
    would silently lose types.
    """
    images: list[Path] = []
    others: list[Path] = []
    unreadable: list[str] = []
    for path, problem in walk_files(str(root), suffixes=None):
        if problem is not None:
            unreadable.append(f"{path}: {problem}")
        else:
            (images if is_image(path) else others).append(Path(path))
    if unreadable:
        raise BadImagesError(unreadable, f"cannot read every folder under {root}; nothing was added")
    return images, others


def label_for(path: Path, root: Path, mode: str) -> str | None:
    """The label ``mode`` gives ``path`` (inside ``root``); None for a root image in folder mode."""
    rel = path.relative_to(root)
    parts = rel.parts[:-1]
    if mode == "folder":
        return "/".join(parts) if parts else None
    if mode == "file":
        return "_".join((*parts, rel.stem))
    raise GalleryError(f"unknown label mode {mode!r}; choose one of {', '.join(LABEL_MODES)}")


def scan_register(root: str | os.PathLike, mode: str = "folder") -> Scan:
    """All images under ``root`` with their labels; refuses root images (folder mode) and collisions."""
    if mode not in LABEL_MODES:
        raise GalleryError(f"unknown label mode {mode!r}; choose one of {', '.join(LABEL_MODES)}")
    root = Path(root)
    if not root.is_dir():
        raise GalleryError(f"register directory not found (or not a directory): {root}")
    images, others = walk_images(root)
    if not images:
        raise GalleryError(f"no images found under {root} (looked for {', '.join(DOCUMENT_SUFFIXES)}, "
                           "hidden files skipped)")
    entries: list[tuple[Path, str]] = []
    at_root: list[Path] = []
    for p in images:
        label = label_for(p, root, mode)
        if label is None:
            at_root.append(p)
        else:
            entries.append((p, label))
    problems: list[str] = []
    if at_root:
        problems += [f"{p}: image directly in the register root has no document-type folder; move it to "
                     f"{root}/<type>/{p.name}, or use --label-mode file" for p in at_root]
    if mode == "file":
        by_label: dict[str, list[Path]] = defaultdict(list)
        for p, label in entries:
            by_label[label].append(p)
        problems += [f"label {label!r} from several files: {', '.join(str(p) for p in ps)} (rename all but one)"
                     for label, ps in by_label.items() if len(ps) > 1]
    if problems:
        raise LabelError(problems, f"cannot derive labels under {root} ({mode} mode)")
    return Scan(entries, others)
