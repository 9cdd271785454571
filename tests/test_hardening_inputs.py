"""Hardened input reading: what a file name, a special file, a symbolic link, a hostile image
header or a damaged TIFF page chain can do to `retriever run`, `retriever classify` and
`indexer add/build`: an error row naming the file and the reason, never a crash, a hang, a
lost page or an unbounded read."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
import traceback
import zlib
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from bulk_helpers import bulk, interrupted_run, build_gallery, scan, write_pdf, write_scans
from encoders import decode
from encoders.decode import MAX_PIXELS, DecodeError, read_bytes, read_image
from encoders import pages
from encoders.inputs import display_path, expand_inputs, fs_path, walk_files
from encoders.pages import iter_pages

ROOT = Path(__file__).resolve().parents[1]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                                reason="needs FIFOs and /dev/zero (POSIX)")



@pytest.fixture
def gallery(tiny, tmp_path):
    return build_gallery(tiny, tmp_path)




def rows(out: Path) -> list[dict]:
    return pq.read_table(out).select(["path", "page", "label", "error"]).to_pylist()


def cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """`retriever ARGS` in a child process: a hang fails the test instead of stalling the suite."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", "from retriever.cli import main; main()", *args], cwd=str(ROOT),
                          env=env, capture_output=True, text=True, timeout=timeout)


def in_thread(fn, timeout: float = 10.0):
    """fn() in a daemon thread; fails (instead of hanging) if it has not returned within ``timeout``."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still running after {timeout} s (blocked?)"
    if "error" in box:
        raise box["error"]
    return box["value"]


def encoded(ext: str, img: np.ndarray | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, scan(3, 24, 20) if img is None else img)
    assert ok
    return buf.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(w: int, h: int, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG that declares w x h pixels but holds a few bytes of zeros (a decompression bomb's shape)."""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(bytes(4096))) + png_chunk(b"IEND", b""))


def tiff_header_only(w: int, h: int) -> bytes:
    """A little-endian TIFF with one directory declaring w x h RGB pixels and 4 bytes of data."""
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 8),
               (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, 4)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 12) + bytes(4) + ifd


def write_raw_name(folder: Path, name: bytes, data: bytes) -> str:
    """Write ``data`` to a file whose name is the raw bytes ``name``; the str path Python uses for it."""
    raw = os.path.join(os.fsencode(str(folder)), name)
    with open(raw, "wb") as fh:
        fh.write(data)
    return os.fsdecode(raw)


def tiff_pages_file(path: Path, n: int, size: int = 8) -> list[np.ndarray]:
    imgs = [np.full((size, size, 3), (i % 251, (7 * i) % 253, (i // 251) % 256), np.uint8) for i in range(n)]
    assert cv2.imwritemulti(str(path), imgs)
    return imgs


def outcomes(path) -> list[tuple[int, str]]:
    """iter_pages as (page, "ok" or the error reason)."""
    return [(i, x.reason if isinstance(x, DecodeError) else "ok") for i, x in iter_pages(str(path))]


# ------------------------------------------------------------------ 1. names that are not UTF-8
def test_non_utf8_file_name_gets_a_text_path_row_and_the_job_resumes(tiny, gallery, tmp_path, monkeypatch):
    d = tmp_path / "in"
    write_scans(d / "b", 7)
    (d / "a").mkdir()
    raw = write_raw_name(d / "a", b"\xff\xfe.jpg", encoded(".jpg", scan(42)))
    shown = os.fsencode(raw).decode("utf-8", "backslashreplace")
    assert shown == str(d / "a") + "/\\xff\\xfe.jpg"
    out = tmp_path / "res.parquet"
    interrupted_run(monkeypatch, 3, [d], gallery, out, tiny, batch_size=2, workers=1, part_rows=2)
    s = bulk([d], gallery, out, tiny)  # resume: the first inputs, the odd name among them, hash the same
    assert s["resumed_files"] >= 2 and s["files"] == 8
    got = rows(out)
    assert [r["path"] for r in got] == [shown] + [str(p) for p in sorted((d / "b").iterdir())]
    assert got[0]["error"] is None and got[0]["label"] is not None  # the file is readable: classified
    assert bulk([d], gallery, out, tiny)["status"] == "already complete"


def test_escaped_names_map_back_to_the_file_and_ambiguous_ones_are_refused(tmp_path):
    raw = write_raw_name(tmp_path, b"scan-\xe9.jpg", encoded(".jpg"))
    shown = display_path(raw)
    assert shown.endswith("scan-\\xe9.jpg") and shown.encode("utf-8")
    assert fs_path(shown) == raw and display_path(str(tmp_path / "plain.jpg")) == str(tmp_path / "plain.jpg")
    assert read_image(fs_path(shown)).shape[2] == 3
    (item,) = expand_inputs([tmp_path])
    assert item.path == shown and item.problem is None
    # A real file whose name is the escaped text: the two cannot be told apart once shown.
    (tmp_path / "scan-\\xe9.jpg").write_bytes(encoded(".jpg"))
    items = [(it.path, it.problem) for it in expand_inputs([tmp_path])]
    assert len(items) == 2 and {p for p, _ in items} == {shown}
    assert sorted(p is None for _, p in items) == [False, True]
    assert any(p and "not valid UTF-8" in p and "rename" in p for _, p in items)
    assert fs_path(shown) == shown  # the literal name wins; the raw one got its error row above


# ------------------------------------------------------------------ 2. headers over OpenCV's limits
def wide_bmp(width: int = 1 << 21) -> bytes:
    data = bytearray(encoded(".bmp"))
    struct.pack_into("<i", data, 18, width)  # BITMAPINFOHEADER width: over CV_IO_MAX_IMAGE_WIDTH
    return bytes(data)


def test_header_over_the_decoders_limit_is_a_decode_error_naming_the_file(tmp_path):
    p = tmp_path / "wide.bmp"
    p.write_bytes(wide_bmp())
    with pytest.raises(DecodeError) as err:
        read_image(p)
    assert err.value.source == str(p) and "width over the decoder's limit" in err.value.reason
    assert f"{1 << 21}x24" in err.value.reason
    assert [r for _, r in outcomes(p)] == [err.value.reason]


def test_random_header_flips_only_ever_give_an_image_or_a_decode_error(monkeypatch):
    monkeypatch.setattr(decode, "MAX_PIXELS", 1_000_000)  # keep what survives the flips small and fast
    monkeypatch.setattr(decode, "MAX_DECODED_BYTES", 4_000_000)
    rng = np.random.default_rng(7)
    samples = [encoded(ext) for ext in (".bmp", ".jpg", ".png", ".webp", ".tif", ".gif")]
    kinds = {"ok": 0, "error": 0}
    for _ in range(600):
        data = bytearray(samples[int(rng.integers(len(samples)))])
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(min(len(data), 64)))] = int(rng.integers(256))
        try:
            img = read_image(bytes(data), target_hw=(32, 32))
        except DecodeError:
            kinds["error"] += 1
        else:
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            kinds["ok"] += 1
    assert kinds["ok"] and kinds["error"]


def test_classify_and_indexer_add_report_the_bad_header_and_keep_the_others(tiny_model_path, tiny, tmp_path,
                                                                             runner):
    from indexer.cli import cli as indexer_cli
    from retriever.cli import EXIT_INPUT_ERRORS, main

    g = build_gallery(tiny, tmp_path)
    good = write_scans(tmp_path / "q", 2)
    bad = tmp_path / "q" / "wide.bmp"
    bad.write_bytes(wide_bmp())
    res = runner.invoke(main, ["classify", str(tmp_path / "q"), "-g", str(g.path), "--threshold", "0.5", "--model",
                               str(tiny_model_path)])
    assert res.exit_code == EXIT_INPUT_ERRORS, res.output
    lines = res.stdout.splitlines()
    assert [ln for ln in lines if "ERROR" in ln] == [next(ln for ln in lines if "wide.bmp" in ln)]
    assert "decoder's limit" in next(ln for ln in lines if "wide.bmp" in ln)
    assert sum("ACCEPT" in ln or "REJECT" in ln for ln in lines) == len(good)
    res = runner.invoke(indexer_cli, ["add", str(g.path), str(bad), str(good[0]), "--label", "invoice", "--model",
                                      str(tiny_model_path)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert f"{bad}: image header declares a width over the decoder's limit" in res.output + res.stderr


# ------------------------------------------------------------------ 3. pixel bombs in every format
def webp_vp8x(w: int, h: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


BOMBS = {
    "png": png_header_only(20000, 20000),
    "bmp": b"BM" + bytes(12) + struct.pack("<Iii", 40, 20000, 20000) + bytes(64),
    "webp": webp_vp8x(20000, 20000),
    "tiff": tiff_header_only(20000, 20000),
    "gif": b"GIF89a" + struct.pack("<HH", 20000, 20000) + bytes(16),
    "jpeg": b"\xff\xd8\xff\xc0\x00\x11\x08" + struct.pack(">HH", 20000, 20000) + bytes(12) + b"\xff\xd9",
}


@pytest.mark.parametrize("fmt", sorted(BOMBS))
def test_pixel_bombs_are_refused_from_the_header_before_decoding(fmt, tmp_path, monkeypatch):
    def no_decoding(*a, **k):
        raise AssertionError("the decoder was called on a pixel bomb")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    p = tmp_path / f"bomb.{fmt}"
    p.write_bytes(BOMBS[fmt])
    assert p.stat().st_size < 10_000
    with pytest.raises(DecodeError) as err:
        read_image(p, target_hw=(32, 32))
    assert "20000x20000" in err.value.reason and str(MAX_PIXELS) in err.value.reason
    (page,) = outcomes(p)
    assert page == (0, err.value.reason) or (fmt == "tiff" and "20000x20000" in page[1])


def test_deep_16bit_images_are_bounded_by_decoded_bytes_and_odd_formats_refused():
    with pytest.raises(DecodeError, match=r"13000x13000 pixels, 1352000000 bytes once decoded"):
        read_image(png_header_only(13000, 13000, depth=16, colour=6))  # 169 MP, under MAX_PIXELS
    with pytest.raises(DecodeError, match=r"unsupported image format \(PNM/PFM\)"):
        read_image(b"P6\n30000 30000\n255\n" + bytes(64))


def test_pixel_conversions_in_strips_equal_whole_image_arithmetic(monkeypatch):
    monkeypatch.setattr(decode, "_STRIP_PIXELS", 64)  # many strips, a ragged last one
    rng = np.random.default_rng(1)
    bgra = rng.integers(0, 256, (37, 11, 4), dtype=np.uint8)
    alpha = bgra[:, :, 3:4].astype(np.float32) / 255.0
    expect = (bgra[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    np.testing.assert_array_equal(decode.to_bgr_uint8(bgra, "x"), expect)
    deep = rng.integers(0, 65536, (37, 11, 3), dtype=np.uint16)
    np.testing.assert_array_equal(decode.to_bgr_uint8(deep, "x"), (deep >> 8).astype(np.uint8))
    flt = rng.random((37, 11, 3), dtype=np.float32)
    np.testing.assert_array_equal(decode.to_bgr_uint8(flt, "x"), np.clip(flt * 255.0, 0, 255).astype(np.uint8))


# ------------------------------------------------------------------ 4. symbolic links in walks
def linked_tree(d: Path) -> None:
    write_scans(d, 2)
    write_scans(d / "sub", 2, start=2)
    (d / "sub" / "up").symlink_to("..")  # a cycle
    (d / "dirlink.jpg").symlink_to("sub")  # a directory link with an image suffix: not followed
    (d / "broken.jpg").symlink_to("nowhere.jpg")
    (d / "loop.jpg").symlink_to("loop.jpg")


def test_walks_do_not_follow_directory_links_and_list_every_broken_or_looping_link(tiny, gallery, tmp_path):
    d = tmp_path / "in"
    linked_tree(d)
    names = [os.path.relpath(it.path, d) for it in expand_inputs([d])]
    assert names == ["broken.jpg", "loop.jpg", "scan-00000.jpg", "scan-00001.jpg", "sub/scan-00002.jpg",
                     "sub/scan-00003.jpg"]
    globbed = [os.path.relpath(it.path, d) for it in in_thread(lambda: list(expand_inputs([f"{d}/**/*.jpg"])))]
    assert globbed == names
    out = tmp_path / "res.parquet"
    s = bulk([d], gallery, out, tiny)
    errors = {os.path.relpath(r["path"], d): r["error"] for r in rows(out) if r["error"]}
    assert errors == {"broken.jpg": "broken symbolic link (its target does not exist)",
                      "loop.jpg": "symbolic link loop"}
    assert s["rows"] == 6 and s["errors"] == 2


def test_a_very_deep_tree_is_walked_without_recursion_limits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    deep = "t"
    os.mkdir(deep)
    for _ in range(300):
        deep = os.path.join(deep, "d")
        os.mkdir(deep)
    with open(os.path.join(deep, "x.jpg"), "wb") as fh:
        fh.write(b"x")
    # A low recursion limit stands in for a tree deeper than the default one (1,000 levels),
    # which pytest's own clean-up (shutil.rmtree, recursive) could not remove afterwards.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(traceback.extract_stack()) + 100)
    try:
        found = [p for p, _ in walk_files("t")]
    finally:
        sys.setrecursionlimit(limit)
    assert found == [os.path.join(deep, "x.jpg")]


# ------------------------------------------------------------------ 5. FIFOs, devices, huge files
@needs_fifo
def test_fifos_and_devices_are_refused_without_blocking_or_reading(tmp_path):
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    for name, kind in (("fifo.jpg", "FIFO"), ("zero.jpg", "character device")):
        with pytest.raises(DecodeError, match=rf"not a regular file \({kind}\)"):
            in_thread(lambda: read_bytes(tmp_path / name), timeout=5)
        assert decode.file_problem(tmp_path / name) == f"not a regular file ({kind})"
    assert outcomes(tmp_path / "fifo.jpg") == [(0, "not a regular file (FIFO)")]


def test_files_over_the_size_bound_are_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "MAX_FILE_BYTES", 1000)
    p = tmp_path / "big.png"
    p.write_bytes(bytes(2000))
    with pytest.raises(DecodeError, match=r"file too large \(2000 bytes, limit 1000\)"):
        read_bytes(p)


@needs_fifo
def test_run_and_classify_finish_on_a_fifo_and_dev_zero(tiny_model_path, gallery, tmp_path):
    d = tmp_path / "in"
    write_scans(d, 1)
    os.mkfifo(d / "fifo.jpg")
    (d / "zero.jpg").symlink_to("/dev/zero")
    common = ["-g", str(gallery.path), "--threshold", "0.5", "--model", str(tiny_model_path)]
    out = tmp_path / "res.parquet"
    res = cli(["run", str(d), "-o", str(out), "--quiet", *common])
    assert res.returncode == 3, res.stderr
    assert {Path(r["path"]).name: r["error"] for r in rows(out)} == {
        "fifo.jpg": "not a regular file (FIFO)", "scan-00000.jpg": None,
        "zero.jpg": "not a regular file (character device)"}
    res = cli(["classify", str(d / "fifo.jpg"), str(d / "zero.jpg"), str(d / "scan-00000.jpg"), *common])
    assert res.returncode == 3, res.stderr
    assert any("fifo.jpg" in ln and "ERROR: not a regular file (FIFO)" in ln for ln in res.stdout.splitlines())
    assert sum("ACCEPT" in ln or "REJECT" in ln for ln in res.stdout.splitlines()) == 1


# ------------------------------------------------------------------ 6. many-page TIFFs
def test_a_300_page_tiff_gives_every_page_quickly(tmp_path):
    p = tmp_path / "many.tif"
    written = tiff_pages_file(p, 300)
    t0 = time.perf_counter()
    got = list(iter_pages(str(p), (32, 32)))
    elapsed = time.perf_counter() - t0
    assert [i for i, _ in got] == list(range(300))
    for (_, img), want in zip(got, written):
        np.testing.assert_array_equal(img, want)  # each page is itself (LZW is lossless)
    assert elapsed < 2.0


def test_tiff_pages_cost_linear_time(tmp_path):
    p = tmp_path / "many.tif"
    tiff_pages_file(p, 1500, size=4)
    t0 = time.perf_counter()
    n = sum(1 for _, img in iter_pages(str(p)) if not isinstance(img, DecodeError))
    assert n == 1500 and time.perf_counter() - t0 < 3.0  # 1,000 pages took 19 s when each re-walked the file


def test_pages_past_the_cap_get_one_error_row(tmp_path, monkeypatch):
    monkeypatch.setattr(pages, "MAX_PAGES", 5)
    tiff_pages_file(tmp_path / "a.tif", 8)
    got = outcomes(tmp_path / "a.tif")
    assert got[:5] == [(i, "ok") for i in range(5)] and len(got) == 6
    assert got[5][0] == 5 and "more than 5 pages" in got[5][1]
    pytest.importorskip("pypdfium2")
    write_pdf(tmp_path / "b.pdf", 7)
    got = outcomes(tmp_path / "b.pdf")
    assert got[:5] == [(i, "ok") for i in range(5)] and len(got) == 6 and "PDF has 7 pages" in got[5][1]


# ------------------------------------------------------------------ 7. TIFF pages lost silently
def directory_entries(data: bytes, ifd: int) -> int:
    return struct.unpack_from("<H", data, ifd)[0]


def test_tiff_pages_that_cannot_be_read_get_error_rows(tiny, gallery, tmp_path):
    src = tmp_path / "three.tif"
    tiff_pages_file(src, 3)
    data = src.read_bytes()
    layout = decode.tiff_layout(data)
    assert [d.page_number for d in layout.pages] == [(0, 3), (1, 3), (2, 3)] and layout.problem is None
    second = layout.pages[1].offset
    d = tmp_path / "in"
    d.mkdir()
    bad_count = bytearray(data)
    struct.pack_into("<H", bad_count, second, 0xFFFF)  # page 2's directory: absurd entry count
    (d / "a-bad-ifd.tif").write_bytes(bytes(bad_count))
    blank = bytearray(data)
    blank[second + 2:second + 2 + 12 * directory_entries(data, second)] = bytes(12 * directory_entries(data, second))
    (d / "b-blank-ifd.tif").write_bytes(bytes(blank))  # page 2 unreadable, its chain pointer intact
    five = tmp_path / "five.tif"
    tiff_pages_file(five, 5)
    cut = decode.tiff_layout(five.read_bytes()).pages[3].offset - 10
    (d / "c-truncated.tif").write_bytes(five.read_bytes()[:cut])
    looping = bytearray(data)
    struct.pack_into("<I", looping, layout.pages[2].next_at, layout.pages[0].offset)
    (d / "d-loop.tif").write_bytes(bytes(looping))

    assert [r for r in outcomes(d / "a-bad-ifd.tif")] == [
        (0, "ok"), (1, f"TIFF page 2 of 3 cannot be located: the directory of page 2 is corrupt (65535 entries at "
                       f"offset {second}) or truncated"), (2, outcomes(d / "a-bad-ifd.tif")[2][1])]
    assert [(i, r == "ok") for i, r in outcomes(d / "b-blank-ifd.tif")] == [(0, True), (1, False), (2, True)]
    got = outcomes(d / "c-truncated.tif")
    assert [(i, r == "ok") for i, r in got] == [(0, True), (1, True), (2, True), (3, False), (4, False)]
    assert all("TIFF page" in r and "of 5" in r and "outside the file" in r for _, r in got[3:])
    assert outcomes(d / "d-loop.tif") == [(0, "ok"), (1, "ok"), (2, "ok")]  # all 3 declared pages, and it ends

    out = tmp_path / "res.parquet"
    bulk([d], gallery, out, tiny)
    per_file = {}
    for r in rows(out):
        per_file.setdefault(Path(r["path"]).name, []).append((r["page"], r["error"] is None))
    assert per_file == {"a-bad-ifd.tif": [(0, True), (1, False), (2, False)],
                        "b-blank-ifd.tif": [(0, True), (1, False), (2, True)],
                        "c-truncated.tif": [(0, True), (1, True), (2, True), (3, False), (4, False)],
                        "d-loop.tif": [(0, True), (1, True), (2, True)]}


def test_a_broken_chain_without_a_declared_page_count_is_reported_once(tmp_path):
    data = bytearray(encoded(".tif", scan(9, 16, 12)))  # one page, no PageNumber tag
    layout = decode.tiff_layout(bytes(data))
    assert len(layout.pages) == 1 and layout.declared is None
    struct.pack_into("<I", data, layout.pages[0].next_at, 10**9)  # "the next page is far away": truncated?
    (tmp_path / "next.tif").write_bytes(bytes(data))
    got = outcomes(tmp_path / "next.tif")
    assert got[0] == (0, "ok") and len(got) == 2
    assert got[1][0] == 1 and "page 2 and any after it cannot be located" in got[1][1]
    assert "outside the file" in got[1][1]
    d = layout.pages[0]
    struct.pack_into("<H", data, d.offset + 2, 0xFFFE)  # page 1 unreadable as well: one corrupt file, one row
    (tmp_path / "both.tif").write_bytes(bytes(data))
    ((page, reason),) = outcomes(tmp_path / "both.tif")
    assert page == 0 and "directory chain breaks too" in reason


# ------------------------------------------------------------------ 8. classify names the real reason
def test_classify_reports_link_loops_and_broken_links_as_such(tiny_model_path, gallery, tmp_path, runner):
    from retriever.cli import main
    from encoders.inputs import expand_inputs

    d = tmp_path / "in"
    linked_tree(d)
    # classify reads its inputs as `retriever run` does: the same walk, the same order
    found = [os.path.relpath(it.path, d) for it in expand_inputs([str(d)])]
    assert found == ["broken.jpg", "loop.jpg", "scan-00000.jpg", "scan-00001.jpg", "sub/scan-00002.jpg",
                     "sub/scan-00003.jpg"]
    res = runner.invoke(main, ["classify", str(d / "loop.jpg"), str(d / "broken.jpg"), str(d / "gone.jpg"),
                               str(d / "scan-00000.jpg"), "-g", str(gallery.path), "--threshold", "0.5", "--model",
                               str(tiny_model_path), "--json"])
    assert res.exit_code == 3
    errors = {Path(o["path"]).name: o["error"] for o in map(json.loads, res.stdout.splitlines()) if o.get("error")}
    assert errors == {"loop.jpg": "symbolic link loop", "gone.jpg": "file not found",
                      "broken.jpg": "broken symbolic link (its target does not exist)"}
