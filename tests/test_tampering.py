"""A tampered or damaged gallery never answers: it fails with an error naming the file (no traceback,
no silent wrong answer), and `indexer rollback` stays the way out."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import faiss
from indexer import Gallery
from indexer.errors import GalleryCorruptError, GalleryError
from synth_docs import type_image, write



@pytest.fixture()
def gal(tiny, tmp_path) -> Path:
    reg = tmp_path / "reg"
    for t in range(4):
        write(reg / f"type{t}" / "specimen.png", type_image(t))
    g = Gallery.build(reg, tmp_path / "g", tiny)
    write(tmp_path / "more" / "type9" / "specimen.png", type_image(9))
    g.add([tmp_path / "more"], force=True)  # generation 2, so there is a previous one to roll back to
    return g.path


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _set_manifest(path: Path, m: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(m))


def test_flipped_bytes_in_the_index_stop_answers_and_rollback_recovers(gal, tiny):
    m = _manifest(gal)
    p = gal / m["index_file"]
    data = bytearray(p.read_bytes())
    lo, hi = min(200, len(data) // 4), min(len(data), 2200)
    data[lo:hi] = bytes(b ^ 0x5A for b in data[lo:hi])
    p.write_bytes(bytes(data))
    with pytest.raises(GalleryCorruptError, match=rf"{m['index_file']}: checksum mismatch.*indexer rollback"):
        Gallery.open(gal)
    from retriever.cli import main

    q = write(gal.parent / "q.png", type_image(1))
    res = CliRunner().invoke(main, ["classify", str(q), "-g", str(gal), "--threshold", "0.1", "--model",
                                    str(tiny.path)])
    assert res.exit_code == 1 and "checksum mismatch" in res.output and "ACCEPT" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    Gallery.rollback_at(gal)
    g = Gallery.open(gal)
    assert g.count == 4 and g.search(tiny.encode([type_image(1)]), 1)[1].shape == (1, 1)


def test_swapped_vectors_are_refused(gal, tiny):
    m = _manifest(gal)
    g = Gallery.open(gal)
    ids, vecs = g.vectors()
    vecs[[0, 1]] = vecs[[1, 0]]  # two labels' vectors swapped: each capture would be accepted as the other
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(g.dim))
    index.add_with_ids(vecs, ids)
    faiss.write_index(index, str(gal / m["index_file"]))
    with pytest.raises(GalleryCorruptError, match="checksum mismatch"):
        Gallery.open(gal)


def test_a_memory_mapped_file_is_checked_in_the_background_and_stops_answers(gal, tiny):
    m = _manifest(gal)
    p = gal / m["index_file"]
    data = bytearray(p.read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    p.write_bytes(bytes(data))
    g = Gallery.open(gal, mmap=True)  # mapped files are hashed in a background thread
    assert any("checksum mismatch" in x for x in g.integrity_problems(wait=True))
    with pytest.raises(GalleryCorruptError, match="checksum mismatch"):
        g.search(tiny.encode([type_image(1)]), 1)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(count="many"), "'count' must be an integer"),
    (lambda m: m.update(generation=-5), "'generation' must be an integer >= 1"),
    (lambda m: m.update(items_file="/etc/passwd"), "not a file of this gallery"),
    (lambda m: m.update(index_file="../index-0001.faiss"), "not a file of this gallery"),
    (lambda m: m.update(encoder="x"), "'encoder' must hold"),
    (lambda m: m.update(exact=[{"vectors": "/tmp/x.npy", "ids": "exact-0001.ids.npy"}]), "not a file of this gallery"),
    (lambda m: m.update(self_calibration={"probes_file": "../../p.parquet"}), "not a file of this gallery"),
    (lambda m: m["previous"].update(items_file="/etc/passwd"), "previous generation"),
])
def test_a_manifest_of_the_wrong_shape_is_refused_with_a_reason(gal, change, message):
    m = _manifest(gal)
    change(m)
    _set_manifest(gal, m)
    with pytest.raises(GalleryCorruptError, match=message):
        Gallery.open(gal)


def test_a_manifest_of_random_bytes_is_an_error_not_a_traceback(gal):
    (gal / "manifest.json").write_bytes(os.urandom(300) + b"\xff\xfe")
    with pytest.raises(GalleryCorruptError, match="not UTF-8"):
        Gallery.open(gal)
    from indexer.cli import cli

    res = CliRunner().invoke(cli, ["list", str(gal)])
    assert res.exit_code == 1 and "Error: " in res.output and "Traceback" not in res.output


def test_rollback_onto_a_garbage_previous_generation_is_refused(gal):
    prev = _manifest(gal)["previous"]
    (gal / prev["index_file"]).write_bytes(b"garbage" * 100)
    with pytest.raises(GalleryCorruptError, match="cannot roll back"):
        Gallery.rollback_at(gal)
    m = _manifest(gal)
    m["previous"]["checksums"] = {}  # no record to compare with: FAISS itself refuses the file
    _set_manifest(gal, m)
    with pytest.raises(GalleryCorruptError, match="cannot roll back.*cannot be read"):
        Gallery.rollback_at(gal)
    assert Gallery.open(gal).count == 5  # the current generation is untouched


def test_checksums_cover_every_generation_file_and_follow_writes(gal, tiny):
    from indexer.integrity import file_sha256
    from indexer.state import generation_files

    m = _manifest(gal)
    assert set(m["checksums"]) == set(generation_files(m))
    for name, digest in m["checksums"].items():
        assert file_sha256(gal / name) == digest
    g = Gallery.open(gal)
    g.remove(labels=["type9"])
    m2 = _manifest(gal)
    assert set(m2["checksums"]) == set(generation_files(m2)) and m2["checksums"] != m["checksums"]
    with pytest.raises(GalleryError):
        g.remove(labels=["nope"])
    assert np.isfinite(g.search(tiny.encode([type_image(2)]), 2)[0]).all()
