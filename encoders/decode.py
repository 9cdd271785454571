"""Turn paths, bytes or arrays into BGR uint8 images, cheaply and with errors that name the file.

Decoding dominates the cost of bulk classification.  A 1700x2200 scan shrunk to a 128x128
model input wastes most of a full decode, so JPEGs are decoded at 1/2, 1/4 or 1/8 scale in the
DCT domain (libjpeg's scaling, through OpenCV's ``IMREAD_REDUCED_*`` modes) whenever the
reduced image is still comfortably larger than the model input.  EXIF orientation is applied,
grayscale/alpha/16-bit inputs are converted, and anything unreadable raises
:class:`DecodeError` naming the source and the reason.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Union

import cv2
import numpy as np

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

# Keep the reduced image at least this many times the model input on each side, so the final
# area resize, not the DCT scaling, decides the pixels the model sees.
REDUCE_MARGIN = 1.5
MAX_PIXELS = 300_000_000  # refuse decompression bombs before allocating them

_JPEG_MAGIC = b"\xff\xd8\xff"
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_REDUCED_COLOR = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}


class DecodeError(ValueError):
    """An input could not be turned into an image; ``source`` names it and ``reason`` says why."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def describe(src: ImageInput) -> str:
    """A short human name for an input, for error messages."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, np.ndarray):
        return f"<array {src.shape} {src.dtype}>"
    return f"<{len(src)} bytes>"


def read_bytes(path: str | os.PathLike) -> bytes:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DecodeError(str(path), "file not found") from None
    except IsADirectoryError:
        raise DecodeError(str(path), "is a directory, not an image file") from None
    except PermissionError:
        raise DecodeError(str(path), "permission denied") from None
    except OSError as exc:
        raise DecodeError(str(path), f"cannot read ({exc.strerror or exc})") from None
    return data


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's SOF header without decoding, or None if not found."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return h, w
        i += 2 + length
    return None


def reduction_for(size_hw: tuple[int, int], target_hw: tuple[int, int] | None) -> int:
    """Largest DCT scale (1, 2, 4, 8) that keeps both sides >= REDUCE_MARGIN x the target."""
    if target_hw is None:
        return 1
    h, w = size_hw
    th, tw = target_hw
    for k in (8, 4, 2):
        if h / k >= REDUCE_MARGIN * th and w / k >= REDUCE_MARGIN * tw:
            return k
    return 1


def to_bgr_uint8(img: np.ndarray, source: str) -> np.ndarray:
    """Normalise any decoded array (gray, BGRA, 16-bit, float) to contiguous HxWx3 BGR uint8."""
    if img is None or img.size == 0:
        raise DecodeError(source, "decoded to an empty image")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        hi = float(np.nanmax(img)) if img.size else 1.0
        img = np.clip(img * (255.0 if hi <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DecodeError(source, f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        # Composite transparency onto white paper: a transparent logo is not a black square.
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    elif img.ndim != 3 or img.shape[2] != 3:
        raise DecodeError(source, f"unsupported image shape {img.shape}")
    return np.ascontiguousarray(img)


def decode_bytes(data: bytes, source: str = "<bytes>", target_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode encoded image bytes to BGR uint8, at reduced scale when ``target_hw`` allows it."""
    if len(data) == 0:
        raise DecodeError(source, "empty file (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    if data[:3] == _JPEG_MAGIC:
        size = jpeg_size(data)
        if size is None:
            raise DecodeError(source, "corrupt JPEG (no frame header)")
        if size[0] * size[1] > MAX_PIXELS:
            raise DecodeError(source, f"image too large ({size[1]}x{size[0]} pixels, limit {MAX_PIXELS})")
        if data.rfind(b"\xff\xd9", max(0, len(data) - 4096)) < 0:
            raise DecodeError(source, "truncated JPEG (no end-of-image marker)")
        k = reduction_for(size, target_hw)
        img = cv2.imdecode(buf, _REDUCED_COLOR[k])
        if img is None:
            raise DecodeError(source, "corrupt JPEG (decoder failed)")
        return to_bgr_uint8(img, source)
    # PNG keeps its alpha channel (composited onto white later); other formats go through
    # ANYCOLOR|ANYDEPTH, which keeps 16-bit depth and, unlike IMREAD_UNCHANGED, applies EXIF
    # orientation (TIFF, WebP).
    flags = cv2.IMREAD_UNCHANGED if data[:8] == b"\x89PNG\r\n\x1a\n" else cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
    img = cv2.imdecode(buf, flags)
    if img is None:
        raise DecodeError(source, f"not a decodable image ({_sniff(data)})")
    return to_bgr_uint8(img, source)


def _sniff(data: bytes) -> str:
    head = data[:16]
    if head.startswith(b"%PDF"):
        return "a PDF: use `retriever run`, which renders PDF pages"
    if head[:1] in (b"{", b"[") or all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "looks like text, not image data"
    return f"unknown format, first bytes {head[:8].hex()}"


def read_image(src: ImageInput, target_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Any supported input -> HxWx3 BGR uint8.

    ``target_hw`` is the size the caller will shrink to (the model input); it only enables
    reduced-resolution JPEG decoding and never changes the aspect ratio.  Arrays are taken as
    BGR (OpenCV's convention) and normalised but not resized.
    """
    if isinstance(src, np.ndarray):
        return to_bgr_uint8(src, describe(src))
    if isinstance(src, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(src), "<bytes>", target_hw)
    if isinstance(src, (str, os.PathLike)):
        return decode_bytes(read_bytes(src), str(src), target_hw)
    raise TypeError(f"cannot read an image from {type(src).__name__}; pass a path, bytes or a BGR array")
