"""One input file -> its pages as BGR images, each page failing on its own.

Scans arrive as single images (JPEG, PNG, BMP, WebP), multi-page TIFFs and PDFs.  Bulk output
has one row per page, so a file is read as a sequence of ``(page, image or error)``: a broken
page costs that page's row, a broken file one error row, never the job.

* Single images go through :func:`encoders.decode.read_image` with the model's input size, so
  JPEGs are decoded at reduced resolution (decoding dominates the cost of a bulk job).
* TIFF pages are decoded one at a time (``cv2.imdecodemulti`` with a page range), so a 300-page
  TIFF at 300 dpi never sits in memory all at once.
* PDF pages are rendered with pypdfium2 (the optional ``docretriever[pdf]`` extra) at the scale
  that makes each side about :data:`PDF_RENDER_FACTOR` x the model input: sharp enough for the
  area resize, and far cheaper than rendering at print resolution.  PDFium is not thread-safe,
  so every call into it holds one process-wide lock.
"""
from __future__ import annotations

import threading
from typing import Iterator

import cv2
import numpy as np

from encoders.decode import MAX_PIXELS, DecodeError, decode_bytes, read_bytes, to_bgr_uint8

__all__ = ["PDF_INSTALL_HINT", "PDF_RENDER_FACTOR", "iter_pages"]

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
    if data[:5] == b"%PDF-" or (path.lower().endswith(".pdf") and b"%PDF-" in data[:1024]):
        yield from _pdf_pages(data, path, target_hw)
    elif data[:4] in _TIFF_MAGIC:
        yield from _tiff_pages(data, path)
    else:
        try:
            yield 0, decode_bytes(data, path, target_hw)
        except DecodeError as exc:
            yield 0, exc


def _tiff_pages(data: bytes, path: str) -> Iterator[Page]:
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        n = int(cv2.imcount(path, _TIFF_FLAGS))
    except cv2.error:
        n = 0
    if n <= 1:  # single page, or unreadable: the single-image decoder gives the precise error
        try:
            yield 0, decode_bytes(data, path)
        except DecodeError as exc:
            yield 0, exc
        return
    for i in range(n):
        try:
            ok, mats = cv2.imdecodemulti(buf, _TIFF_FLAGS, None, (i, i + 1))
        except cv2.error as exc:
            ok, mats = False, None
            reason = f"corrupt TIFF page {i + 1} of {n} ({str(exc).strip().splitlines()[-1]})"
        else:
            reason = f"corrupt TIFF page {i + 1} of {n} (decoder failed)"
        if not ok or not mats:
            yield i, DecodeError(path, reason)
            continue
        try:
            yield i, to_bgr_uint8(mats[0], f"{path} page {i + 1}")
        except DecodeError as exc:
            yield i, exc


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
        for i in range(n):
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
    finally:
        with _PDFIUM_LOCK:
            doc.close()
