"""One input file -> its pages as BGR images, each page failing on its own.

Scans arrive as single images (JPEG, PNG, BMP, WebP), multi-page TIFFs and PDFs.  Bulk output
has one row per page, so a file is read as a sequence of ``(page, image or error)``: a broken
page costs that page's row, a broken file one error row, never the job.

* Single images go through :func:`encoders.decode.read_image` with the model's input size, so
  JPEGs are decoded at reduced resolution (decoding dominates the cost of a bulk job).
* TIFF pages are decoded one at a time, in time linear in the page count, so a 300-page TIFF at
  300 dpi never sits in memory all at once; pages that are declared but cannot be read get
  error rows, and a file has at most :data:`encoders.decode.MAX_PAGES` pages (PDFs too).
* PDF pages are rendered with pypdfium2 (the optional ``docretriever[pdf]`` extra) at the scale
  that makes each side about :data:`PDF_RENDER_FACTOR` x the model input: sharp enough for the
  area resize, and far cheaper than rendering at print resolution.  PDFium is not thread-safe,
  so every call into it holds one process-wide lock.
"""
from __future__ import annotations

import struct
import threading
from typing import Iterator

import cv2
import numpy as np

from .decode import (MAX_PAGES, MAX_PIXELS, DecodeError, TiffDirectory, check_header, decode_bytes, imdecode,
                             read_bytes, tiff_layout, tiff_page_header, to_bgr_uint8)

__all__ = ["PDF_INSTALL_HINT", "PDF_RENDER_FACTOR", "has_pages", "iter_pages", "iter_pages_of"]

PDF_RENDER_FACTOR = 2.0
PDF_MAX_SCALE = 8.0  # 576 dpi: tiny pages (labels, tickets) still get enough pixels
PDF_INSTALL_HINT = "PDF support is not installed: pip install 'docretriever[pdf]' (pypdfium2)"
_PDFIUM_LOCK = threading.Lock()
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_TIFF_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH

Page = tuple[int, "np.ndarray | DecodeError"]


def iter_pages(path: str, target_hw: tuple[int, int] | None = None) -> Iterator[Page]:
    """Yield ``(page_index, BGR uint8 image or DecodeError)`` for every page of ``path``.

    Always yields at least one item: a file that cannot be read at all gives ``(0, DecodeError)``.
    ``target_hw`` is the model input size; it sets the JPEG reduction and the PDF render scale.
    """
    try:
        data = read_bytes(path)
    except DecodeError as exc:
        yield 0, exc
        return
    yield from iter_pages_of(data, path, target_hw)


def _is_pdf(data: bytes, name: str) -> bool:
    return data[:5] == b"%PDF-" or (name.lower().endswith(".pdf") and b"%PDF-" in data[:1024])


def has_pages(data: bytes, name: str = "") -> bool:
    """Whether ``data`` is a document that may hold several pages (PDF, TIFF), read from its first bytes."""
    return _is_pdf(data, name) or data[:4] in _TIFF_MAGIC


def iter_pages_of(data: bytes, name: str, target_hw: tuple[int, int] | None = None) -> Iterator[Page]:
    """:func:`iter_pages` for bytes already in memory (an upload); ``name`` is what errors report."""
    if _is_pdf(data, name):
        yield from _pdf_pages(data, name, target_hw)
    elif data[:4] in _TIFF_MAGIC:
        yield from _tiff_pages(data, name)
    else:
        try:
            yield 0, decode_bytes(data, name, target_hw)
        except DecodeError as exc:
            yield 0, exc


def _tiff_pages(data: bytes, path: str) -> Iterator[Page]:
    """Every page of a TIFF, each decoded on its own in time linear in the page count.

    The directory chain is walked from the header once (:func:`encoders.decode.tiff_layout`);
    page ``i`` is then decoded by pointing the header's first-directory offset at directory
    ``i`` in a private copy of the bytes, ending the chain there, and decoding "the first page".
    (``cv2.imdecodemulti`` with a page range re-walks the chain from the start for every page,
    and OpenCV's decoder walks the chain to its end on open: 2,000 small pages took minutes.)
    Each page's declared size is checked before it is decoded.  Pages the file declares (its
    PageNumber tag) that cannot be located (truncated file, corrupt directory) get error rows;
    a chain that breaks with no declared total gets one for the page after the last one found;
    a chain that goes on past :data:`encoders.decode.MAX_PAGES` one too: no page is lost
    without a row.
    """
    layout = tiff_layout(data, max_pages=MAX_PAGES)
    assert layout is not None  # iter_pages checked the magic
    if not layout.pages:
        yield 0, DecodeError(path, f"corrupt TIFF ({layout.problem})")
        return
    n = len(layout.pages)
    total = max(n, layout.declared or 0)
    buf = bytearray(data)  # private: each page's decode rewrites two offsets in it
    arr = np.frombuffer(buf, dtype=np.uint8)
    at, fmt = (8, layout.endian + "Q") if layout.big else (4, layout.endian + "I")
    # A chain that breaks with no PageNumber total may hide more pages: say so in a row of its own,
    # or, when the last page found is unreadable anyway, in that page's row (one corrupt file, one row).
    tail = layout.problem if layout.problem is not None and layout.declared is None else None
    for i, d in enumerate(layout.pages):
        label = f"TIFF page {i + 1} of {total}" if total > 1 else "TIFF"
        page = _tiff_page(buf, arr, at, fmt, d, path, label)
        if tail is not None and i == n - 1 and isinstance(page, DecodeError):
            page = DecodeError(path, f"{page.reason}; its directory chain breaks too ({tail})")
            tail = None
        yield i, page
    if layout.over_cap:
        yield n, DecodeError(path, f"more than {MAX_PAGES} pages: the pages after page {MAX_PAGES} "
                                   "were not read (limit per file)")
    elif layout.problem is not None and total > n:  # declared by its PageNumber tag, not reachable
        for i in range(n, min(total, MAX_PAGES)):
            yield i, DecodeError(path, f"TIFF page {i + 1} of {total} cannot be located: {layout.problem}")
    elif tail is not None:
        yield n, DecodeError(path, f"TIFF page {n + 1} and any after it cannot be located: {tail}")


def _tiff_page(buf: bytearray, arr: np.ndarray, at: int, fmt: str, d: TiffDirectory, path: str,
               label: str) -> np.ndarray | DecodeError:
    """Decode the page whose directory is ``d`` (``buf`` is the file's private copy, ``arr`` a view of it)."""
    header = tiff_page_header(d)
    problem = header if isinstance(header, str) else check_header(header)
    if problem is not None:
        return DecodeError(path, f"{label}: {problem}")
    struct.pack_into(fmt, buf, at, d.offset)  # the header's first directory is now this page's...
    struct.pack_into(fmt, buf, d.next_at, 0)  # ...and the last: OpenCV's decoder walks the chain on open
    try:
        return to_bgr_uint8(imdecode(arr, _TIFF_FLAGS, path, header, label), path)
    except DecodeError as exc:
        return exc if label in exc.reason else DecodeError(path, f"{label}: {exc.reason}")


def _pdf_scale(width_pt: float, height_pt: float, target_hw: tuple[int, int] | None) -> float:
    """Render scale (1.0 = 72 dpi) giving each side ~PDF_RENDER_FACTOR x the model input."""
    th, tw = target_hw if target_hw is not None else (512, 512)
    scale = max(PDF_RENDER_FACTOR * tw / max(width_pt, 1.0), PDF_RENDER_FACTOR * th / max(height_pt, 1.0))
    scale = min(scale, PDF_MAX_SCALE)
    if width_pt * height_pt * scale * scale > MAX_PIXELS:
        scale = (MAX_PIXELS / max(width_pt * height_pt, 1.0)) ** 0.5
    return scale


def _pdf_pages(data: bytes, path: str, target_hw: tuple[int, int] | None) -> Iterator[Page]:
    try:
        import pypdfium2 as pdfium
    except ImportError:
        yield 0, DecodeError(path, PDF_INSTALL_HINT)
        return
    with _PDFIUM_LOCK:
        try:
            doc = pdfium.PdfDocument(data)
            n = len(doc)
        except Exception as exc:  # PdfiumError: bad data, password, ...
            yield 0, DecodeError(path, f"cannot open PDF ({exc})")
            return
    try:
        if n == 0:
            yield 0, DecodeError(path, "PDF has no pages")
            return
        for i in range(min(n, MAX_PAGES)):
            try:
                with _PDFIUM_LOCK:
                    page = doc[i]
                    try:
                        w, h = page.get_size()
                        bitmap = page.render(scale=_pdf_scale(w, h, target_hw), fill_color=(255, 255, 255, 255))
                        arr = np.array(bitmap.to_numpy(), copy=True)  # own the pixels before PDFium frees them
                        mode = bitmap.mode
                        bitmap.close()
                    finally:
                        page.close()
                if mode in ("RGB", "RGBA", "RGBX"):
                    arr = arr[:, :, [2, 1, 0]] if arr.shape[2] == 3 else arr[:, :, [2, 1, 0, 3]]
                if arr.ndim == 3 and arr.shape[2] == 4:
                    arr = arr[:, :, :3]  # BGRx from a white-filled render: the 4th byte is padding
                yield i, to_bgr_uint8(arr, f"{path} page {i + 1}")
            except DecodeError as exc:
                yield i, exc
            except Exception as exc:
                yield i, DecodeError(path, f"cannot render PDF page {i + 1} of {n} ({exc})")
        if n > MAX_PAGES:
            yield MAX_PAGES, DecodeError(path, f"PDF has {n} pages: the pages after page {MAX_PAGES} were not "
                                               "read (limit per file)")
    finally:
        with _PDFIUM_LOCK:
            doc.close()
