"""Turn paths, bytes or arrays into BGR uint8 images, cheaply and with errors that name the file.

Decoding dominates the cost of bulk classification.  A 1700x2200 scan shrunk to a 128x128
model input wastes most of a full decode, so JPEGs are decoded at 1/2, 1/4 or 1/8 scale in the
DCT domain (libjpeg's scaling, through OpenCV's ``IMREAD_REDUCED_*`` modes) whenever the
reduced image is still comfortably larger than the model input.  EXIF orientation is applied,
grayscale/alpha/16-bit inputs are converted, and anything unreadable raises
:class:`DecodeError` naming the source and the reason.

Nothing a file can do should crash, hang or exhaust the machine, so before any byte is
decoded: a path must be a regular file of at most :data:`MAX_FILE_BYTES` (a FIFO or
``/dev/zero`` is refused by ``stat``, never opened for a blocking read); the format must be one
whose size can be read from its header (JPEG, PNG, BMP, WebP, TIFF, GIF); and the declared size
must stay within :data:`MAX_PIXELS` and :data:`MAX_DECODED_BYTES` (a 400 KB PNG can declare
20000x20000 pixels).  Decoder exceptions (``cv2.error``) become :class:`DecodeError` too.
"""
from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass
from typing import Union

import cv2
import numpy as np

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

# Keep the reduced image at least this many times the model input on each side, so the final
# area resize, not the DCT scaling, decides the pixels the model sees.
REDUCE_MARGIN = 1.5
# The one list of file name endings docretriever reads (register folders, input walks, calibration, the
# benchmark): images, and documents whose pages are images (PDF, read by encoders.pages).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp")
DOCUMENT_SUFFIXES = IMAGE_SUFFIXES + (".pdf",)
MAX_PIXELS = 300_000_000  # refuse decompression bombs before allocating them
MAX_DECODED_BYTES = 4 * MAX_PIXELS  # decoded buffer bound (an 8-bit RGBA image at MAX_PIXELS)
MAX_FILE_BYTES = 512 * 1024 * 1024  # no scan is this big; refused before reading a byte
MAX_PAGES = 10_000  # pages read per file (TIFF directories walked, PDF pages rendered): no file stalls a job
SUPPORTED_FORMATS = ("JPEG", "PNG", "BMP", "WebP", "TIFF", "GIF")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = {b"II*\x00": ("<", False), b"MM\x00*": (">", False), b"II+\x00": ("<", True), b"MM\x00+": (">", True)}
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_REDUCED_COLOR = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}
_STRIP_PIXELS = 1 << 22  # pixel conversions run in strips of this many pixels: bounded temporaries
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}  # IHDR colour type -> decoded channels (palette: up to 4)


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


# ---------------------------------------------------------------------------------- files
def _kind(mode: int) -> str | None:
    """What a non-regular file is, for messages; None for a regular file."""
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "special file"


def _stat_reason(path: str | os.PathLike, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "broken symbolic link (its target does not exist)" if os.path.islink(path) else "file not found"
    if exc.errno == errno.ENOTDIR:
        return "file not found (a parent in the path is not a directory)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return f"cannot read ({exc.strerror or exc})"


def _regular_problem(st: os.stat_result) -> str | None:
    kind = _kind(st.st_mode)
    if kind == "directory":
        return "is a directory, not an image file"
    if kind is not None:
        return f"not a regular file ({kind})"
    if st.st_size > MAX_FILE_BYTES:
        return f"file too large ({st.st_size} bytes, limit {MAX_FILE_BYTES})"
    return None


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as an image file (missing, broken or looping symbolic link,
    FIFO, device, too large...), or None.  Only stats: never opens, so it never blocks."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return _stat_reason(path, exc)
    except ValueError:  # embedded NUL byte
        return "invalid file name (contains a NUL byte)"
    return _regular_problem(st)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES; DecodeError naming the file otherwise.

    Stat before open, then open non-blocking and check again on the open file: a FIFO, a device
    or ``/dev/zero`` behind a symbolic link can neither block nor be read without end, even if
    the path is swapped between the two steps.
    """
    problem = file_problem(path)
    if problem is not None:
        raise DecodeError(str(path), problem)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DecodeError(str(path), _stat_reason(path, exc)) from None
    try:
        st = os.fstat(fd)
        problem = _regular_problem(st)
        if problem is not None:
            raise DecodeError(str(path), problem)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(st.st_size)  # what the file held when opened; a growing file is not chased
    except OSError as exc:
        raise DecodeError(str(path), f"cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------- headers
@dataclass(frozen=True)
class ImageHeader:
    """What a header declares, read without decoding: the size, and the decoded sample layout
    where the format says it (None: assume 3 channels of 8 bits)."""

    format: str
    width: int
    height: int
    channels: int | None = None
    bytes_per_sample: int | None = None

    @property
    def decoded_bytes(self) -> int:
        return self.width * self.height * (self.channels or 3) * (self.bytes_per_sample or 1)


@dataclass(frozen=True)
class TiffDirectory:
    """One page of a TIFF: where its directory (IFD) is and what it declares."""

    offset: int
    next_at: int  # where its pointer to the next directory is
    width: int | None
    height: int | None
    channels: int | None
    bits: int | None
    page_number: tuple[int, int] | None  # the PageNumber tag: (index, total; 0 = unknown)


@dataclass(frozen=True)
class TiffLayout:
    """The directory chain of a TIFF, walked from the header without decoding.

    ``problem`` says why the chain stopped before its end (the page after the last one listed
    could not be located), ``over_cap`` that it goes on past ``max_pages``; ``declared`` is the
    page total the first directory's PageNumber tag announces, if any.
    """

    big: bool
    endian: str
    pages: list[TiffDirectory]
    problem: str | None
    over_cap: bool
    declared: int | None


def image_format(data: bytes) -> str | None:
    """The container format from magic bytes (any OpenCV can decode), or None."""
    head = bytes(data[:16])
    if head.startswith(_JPEG_MAGIC):
        return "JPEG"
    if head.startswith(_PNG_MAGIC):
        return "PNG"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] in _TIFF_MAGIC:
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[4:12] in (b"ftypavif", b"ftypavis", b"ftypheic", b"ftypmif1"):
        return "AVIF/HEIF"
    if head.startswith((b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51")):
        return "JPEG 2000"
    if head[:1] == b"P" and head[1:2] in b"1234567Ff" and head[2:3] in (b" ", b"\t", b"\r", b"\n"):
        return "PNM/PFM"
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "Radiance HDR"
    if head.startswith(b"\x59\xa6\x6a\x95"):
        return "Sun raster"
    if head.startswith(b"\x76\x2f\x31\x01"):
        return "OpenEXR"
    return None


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


def _u(fmt: str, data: bytes, offset: int) -> tuple[int, ...] | None:
    """struct.unpack_from that returns None past the end instead of raising."""
    if offset < 0 or offset + struct.calcsize(fmt) > len(data):
        return None
    return struct.unpack_from(fmt, data, offset)


def tiff_layout(data: bytes, max_pages: int | None = None) -> TiffLayout | None:
    """Walk a TIFF's directory chain from the header (None if ``data`` is not a TIFF).

    Robust to anything a file can hold: offsets outside the file, absurd entry counts and
    chains that loop back end the walk with ``problem`` set; at most ``max_pages`` + 1
    directories are read (default :data:`MAX_PAGES`).
    """
    magic = _TIFF_MAGIC.get(bytes(data[:4]))
    if magic is None:
        return None
    max_pages = MAX_PAGES if max_pages is None else max_pages
    e, big = magic
    if big:
        head = _u(e + "HHQ", data, 4)
        if head is None or head[0] != 8 or head[1] != 0:
            return TiffLayout(big, e, [], "corrupt BigTIFF header", False, None)
        offset = head[2]
        count_fmt, entry_size, next_fmt = "Q", 20, "Q"
    else:
        head = _u(e + "I", data, 4)
        offset = head[0] if head else 0
        count_fmt, entry_size, next_fmt = "H", 12, "I"
    pages: list[TiffDirectory] = []
    seen: set[int] = set()
    problem = None
    over_cap = False
    while True:
        page = len(pages) + 1
        if offset in seen:
            problem = f"the directory chain loops back after page {page - 1}"
            break
        if offset < (16 if big else 8) or offset >= len(data):
            problem = (f"the directory of page {page} is at offset {offset}, outside the file ({len(data)} bytes; "
                       "truncated?)")
            break
        if len(pages) >= max_pages:
            over_cap = True
            break
        seen.add(offset)
        (count,) = _u(e + count_fmt, data, offset) or (0,)
        start = offset + struct.calcsize(count_fmt)
        end = start + count * entry_size
        nxt = _u(e + next_fmt, data, end) if 0 < count <= 4096 else None
        if nxt is None:
            problem = f"the directory of page {page} is corrupt ({count} entries at offset {offset}) or truncated"
            break
        tags: dict[int, tuple[int, ...]] = {}
        for k in range(count):
            tag, typ = struct.unpack_from(e + "HH", data, start + k * entry_size)
            if tag in (256, 257, 258, 277, 297):
                tags[tag] = _tiff_values(data, e, typ, start + k * entry_size, big)
        w, h = (tags.get(256) or (None,))[0], (tags.get(257) or (None,))[0]
        bits = tags.get(258)
        pn = tags.get(297)
        pages.append(TiffDirectory(offset, end, w, h, (tags.get(277) or (None,))[0], max(bits) if bits else None,
                                   (pn[0], pn[1]) if pn and len(pn) >= 2 else None))
        offset = nxt[0]
        if offset == 0:
            break
    first = pages[0].page_number if pages else None
    declared = first[1] if first and first[1] > 0 else None
    return TiffLayout(big, e, pages, problem, over_cap, declared)


_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # BYTE, SHORT, LONG, LONG8


def _tiff_values(data: bytes, e: str, typ: int, entry: int, big: bool) -> tuple[int, ...]:
    """The (at most 16) integer values of the TIFF directory entry at ``entry``, inline or not."""
    item = _TIFF_TYPES.get(typ)
    if item is None:
        return ()
    cfmt = "Q" if big else "I"
    (count,) = struct.unpack_from(e + cfmt, data, entry + 4)
    if count == 0 or count > 16:
        return ()
    where = entry + 4 + struct.calcsize(cfmt)
    if count * struct.calcsize(item) > (8 if big else 4):  # stored elsewhere (e.g. BitsPerSample of RGB)
        (where,) = struct.unpack_from(e + cfmt, data, where)
    return _u(e + item * count, data, where) or ()


def _webp_size(data: bytes) -> tuple[int, int] | str:
    chunk = bytes(data[12:16])
    if chunk == b"VP8X":
        v = _u("<3s3s", data, 24)
        if v is None:
            return "corrupt WebP (truncated VP8X header)"
        return (int.from_bytes(v[0], "little") + 1, int.from_bytes(v[1], "little") + 1)
    if chunk == b"VP8L":
        v = _u("<BI", data, 20)
        if v is None or v[0] != 0x2F:
            return "corrupt WebP (bad VP8L header)"
        return ((v[1] & 0x3FFF) + 1, ((v[1] >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8 ":
        v = _u("<3s3sHH", data, 20)
        if v is None or v[1] != b"\x9d\x01\x2a":
            return "corrupt WebP (bad VP8 header)"
        return (v[2] & 0x3FFF, v[3] & 0x3FFF)
    return f"unsupported WebP chunk {chunk!r}"


def image_header(data: bytes) -> ImageHeader | str:
    """The size a supported image declares, read from its header without decoding; else a
    reason (unsupported format, corrupt header)."""
    fmt = image_format(data)
    if fmt is None:
        return f"not a decodable image ({_sniff(data)})"
    if fmt not in SUPPORTED_FORMATS:
        return f"unsupported image format ({fmt}); supported: {', '.join(SUPPORTED_FORMATS)}"
    if fmt == "JPEG":
        hw = jpeg_size(data)
        if hw is None:
            return "corrupt JPEG (no frame header)"
        return ImageHeader(fmt, hw[1], hw[0])
    if fmt == "PNG":
        v = _u(">I4sIIBB", data, 8)
        if v is None or v[1] != b"IHDR":
            return "corrupt PNG (no IHDR header)"
        return ImageHeader(fmt, v[2], v[3], _PNG_CHANNELS.get(v[5], 4), 2 if v[4] == 16 else 1)
    if fmt == "BMP":
        (dib,) = _u("<I", data, 14) or (0,)
        v = _u("<HH", data, 18) if dib == 12 else _u("<ii", data, 18) if dib >= 16 else None
        if v is None:
            return f"corrupt BMP (unknown header of {dib} bytes)"
        if v[0] <= 0 or v[1] == 0:
            return f"corrupt BMP (header declares {v[0]}x{v[1]} pixels)"
        return ImageHeader(fmt, v[0], abs(v[1]), 4)
    if fmt == "WebP":
        wh = _webp_size(data)
        return wh if isinstance(wh, str) else ImageHeader(fmt, wh[0], wh[1], 4)
    if fmt == "GIF":
        v = _u("<HH", data, 6)
        if v is None:
            return "corrupt GIF (truncated header)"
        return ImageHeader(fmt, v[0], v[1], 4)
    layout = tiff_layout(data, max_pages=1)
    assert layout is not None
    if not layout.pages:
        return f"corrupt TIFF ({layout.problem})"
    return tiff_page_header(layout.pages[0])


def tiff_page_header(d: TiffDirectory) -> ImageHeader | str:
    """What one TIFF directory declares, or why it cannot be decoded."""
    if d.width is None or d.height is None:
        return "corrupt TIFF (no image width/length in its directory)"
    return ImageHeader("TIFF", d.width, d.height, d.channels, max(1, ((d.bits or 8) + 7) // 8))


def check_header(h: ImageHeader) -> str | None:
    """Why an image of this declared size must not be decoded (empty, over the limits), or None."""
    if h.width <= 0 or h.height <= 0:
        return f"corrupt {h.format} (header declares {h.width}x{h.height} pixels)"
    if h.width * h.height > MAX_PIXELS:
        return f"image too large ({h.width}x{h.height} pixels, limit {MAX_PIXELS})"
    if h.decoded_bytes > MAX_DECODED_BYTES:
        return (f"image too large ({h.width}x{h.height} pixels, {h.decoded_bytes} bytes once decoded, "
                f"limit {MAX_DECODED_BYTES})")
    return None


# ---------------------------------------------------------------------------------- decoding
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


def _strips(img: np.ndarray) -> range:
    """Row starts of strips of about _STRIP_PIXELS pixels (a big image's float temporaries stay small)."""
    step = max(1, _STRIP_PIXELS // max(1, img.shape[1] if img.ndim > 1 else 1))
    return range(0, img.shape[0], step)


def to_bgr_uint8(img: np.ndarray, source: str) -> np.ndarray:
    """Normalise any decoded array (gray, BGRA, 16-bit, float) to contiguous HxWx3 BGR uint8."""
    if img is None or img.size == 0:
        raise DecodeError(source, "decoded to an empty image")
    if img.dtype == np.uint16:
        out = np.empty(img.shape, np.uint8)
        step = _strips(img).step
        for y in _strips(img):
            out[y:y + step] = img[y:y + step] >> 8
        img = out
    elif img.dtype in (np.float32, np.float64):
        hi = float(np.nanmax(img)) if img.size else 1.0
        scale = 255.0 if hi <= 1.0 else 1.0
        out = np.empty(img.shape, np.uint8)
        step = _strips(img).step
        for y in _strips(img):
            out[y:y + step] = np.clip(img[y:y + step] * scale, 0, 255).astype(np.uint8)
        img = out
    elif img.dtype != np.uint8:
        raise DecodeError(source, f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        # Composite transparency onto white paper: a transparent logo is not a black square.
        # In strips: whole-image float32 temporaries took 5 GB for a 12000x12000 RGBA PNG.
        out = np.empty(img.shape[:2] + (3,), np.uint8)
        step = _strips(img).step
        for y in _strips(img):
            s = img[y:y + step]
            alpha = s[:, :, 3:4].astype(np.float32) / 255.0
            out[y:y + step] = (s[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
        img = out
    elif img.ndim != 3 or img.shape[2] != 3:
        raise DecodeError(source, f"unsupported image shape {img.shape}")
    return np.ascontiguousarray(img)


def _cv_reason(exc: cv2.error, header: ImageHeader | None) -> str:
    """A cv2.error as a reason a user can act on."""
    text = str(exc)
    size = f" ({header.width}x{header.height} pixels declared)" if header is not None else ""
    for what in ("WIDTH", "HEIGHT", "PIXELS"):
        if f"CV_IO_MAX_IMAGE_{what}" in text:
            return f"image header declares a {what.lower()} over the decoder's limit{size}: corrupt or hostile file"
    detail = text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
    detail = detail.split(" error: ", 1)[-1]
    return f"decoder error{size}: {detail}"


def imdecode(buf: np.ndarray, flags: int, source: str, header: ImageHeader | None, what: str) -> np.ndarray:
    """cv2.imdecode whose every failure (None, cv2.error, MemoryError) is a DecodeError."""
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise DecodeError(source, _cv_reason(exc, header)) from None
    except MemoryError:
        size = f" {header.width}x{header.height}" if header is not None else ""
        raise DecodeError(source, f"out of memory decoding the{size} image") from None
    if img is None:
        raise DecodeError(source, f"corrupt {what} (decoder failed)")
    return img


def decode_bytes(data: bytes, source: str = "<bytes>", target_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode encoded image bytes to BGR uint8, at reduced scale when ``target_hw`` allows it.

    The declared size is checked before decoding (see the module doc); a multi-page TIFF gives
    its first page (``encoders.pages`` reads them all).
    """
    if len(data) == 0:
        raise DecodeError(source, "empty file (0 bytes)")
    header = image_header(data)
    if isinstance(header, str):
        raise DecodeError(source, header)
    problem = check_header(header)
    if problem is not None:
        raise DecodeError(source, problem)
    buf = np.frombuffer(data, dtype=np.uint8)
    if header.format == "JPEG":
        if data.rfind(b"\xff\xd9", max(0, len(data) - 4096)) < 0:
            raise DecodeError(source, "truncated JPEG (no end-of-image marker)")
        k = reduction_for((header.height, header.width), target_hw)
        return to_bgr_uint8(imdecode(buf, _REDUCED_COLOR[k], source, header, "JPEG"), source)
    # PNG keeps its alpha channel (composited onto white later); other formats go through
    # ANYCOLOR|ANYDEPTH, which keeps 16-bit depth and, unlike IMREAD_UNCHANGED, applies EXIF
    # orientation (TIFF, WebP).
    flags = cv2.IMREAD_UNCHANGED if header.format == "PNG" else cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
    return to_bgr_uint8(imdecode(buf, flags, source, header, header.format), source)


def _sniff(data: bytes) -> str:
    head = bytes(data[:16])
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
