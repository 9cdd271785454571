"""Writes only where asked, labels that cannot spoof a row, and bulk results that survive damage."""
from __future__ import annotations

import os

import cv2
import pyarrow.parquet as pq
import pytest

from bulk_helpers import bulk, build_gallery, scan, write_scans
from indexer import Gallery
from indexer.errors import GalleryError, LabelError
from indexer.labels import MAX_LABEL_CHARS, check_label
from retriever.bulk_store import BulkError



@pytest.fixture
def gallery(tiny, tmp_path):
    return build_gallery(tiny, tmp_path)



# ---------------------------------------------------------------------------------- labels
@pytest.mark.parametrize("label", ["a\nb", " trailing", "x" * (MAX_LABEL_CHARS + 1), "pay\u202eslip", "a\u2066b",
                                   "tab\there", "del\x7f"])
def test_unusable_labels_are_refused(label):
    with pytest.raises(GalleryError):
        check_label(label)


def test_build_checks_labels_like_add_and_builds_nothing(tiny, tmp_path):
    reg = tmp_path / "reg"
    for name in ["good", "a\nb", " trailing", "rtl\u202eevil"]:
        (reg / name).mkdir(parents=True)
        cv2.imwrite(str(reg / name / "x.png"), scan(len(name)))
    with pytest.raises(LabelError) as exc:
        Gallery.build(reg, tmp_path / "g", tiny)
    text = str(exc.value)
    assert "'a\\nb'" in text and "' trailing'" in text and "U+202E" in text and "good" not in text.split("\n")[0]
    assert not (tmp_path / "g").exists()


# ---------------------------------------------------------------------------------- --overwrite
def test_overwrite_never_replaces_a_file_the_tool_did_not_write(gallery, tiny, tmp_path):
    files = write_scans(tmp_path / "in", 3)
    before = files[0].read_bytes()
    with pytest.raises(BulkError, match="not a docretriever bulk result"):
        bulk([tmp_path / "in"], gallery, files[0], tiny, overwrite=True)
    assert files[0].read_bytes() == before  # the input is untouched
    out = tmp_path / "res.parquet"
    bulk([tmp_path / "in"], gallery, out, tiny)
    bulk([tmp_path / "in"], gallery, out, tiny, overwrite=True)  # its own result: replaced
    assert pq.read_table(out).num_rows == 3


def test_overwrite_leaves_a_foreign_parts_directory_alone(gallery, tiny, tmp_path):
    write_scans(tmp_path / "in", 2)
    out = tmp_path / "victim.parquet"
    parts = tmp_path / "victim.parquet.parts"
    (parts / "sub").mkdir(parents=True)
    (parts / "keep.txt").write_text("mine")
    (parts / "sub" / "x").write_text("mine too")
    for overwrite in (False, True):
        with pytest.raises(BulkError, match="did not write.*keep.txt.*left untouched"):
            bulk([tmp_path / "in"], gallery, out, tiny, overwrite=overwrite)
    assert (parts / "keep.txt").read_text() == "mine" and (parts / "sub" / "x").is_file()


def test_results_are_never_written_inside_the_gallery(gallery, tiny, tmp_path):
    write_scans(tmp_path / "in", 2)
    with pytest.raises(BulkError, match="inside the gallery directory"):
        bulk([tmp_path / "in"], gallery, gallery.path / "res.parquet", tiny)
    assert not (gallery.path / "res.parquet").exists()
    assert Gallery.open(gallery.path).count == 3


# ---------------------------------------------------------------------------------- damage and leftovers
def test_a_damaged_part_is_redone_on_resume(gallery, tiny, tmp_path, monkeypatch):
    files = write_scans(tmp_path / "in", 12)
    ref = tmp_path / "ref.parquet"
    bulk([tmp_path / "in"], gallery, ref, tiny)
    out = tmp_path / "res.parquet"
    import retriever.bulk_store as bs

    real_merge = bs.PartStore.merge
    monkeypatch.setattr(bs.PartStore, "merge", lambda self, meta: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # killed just before the merge: every part committed
        bulk([tmp_path / "in"], gallery, out, tiny, part_rows=4)
    monkeypatch.setattr(bs.PartStore, "merge", real_merge)
    parts = sorted((tmp_path / "res.parquet.parts").glob("part-*.parquet"))
    assert len(parts) == 3
    data = parts[1].read_bytes()
    parts[1].write_bytes(data[: len(data) // 2])  # truncated on disk
    s = bulk([tmp_path / "in"], gallery, out, tiny, part_rows=4)
    assert s["resumed_files"] == 4 and any("part-00001.parquet was damaged" in n for n in s["notes"])
    got, want = pq.read_table(out), pq.read_table(ref)
    assert got.column("path").to_pylist() == want.column("path").to_pylist() == [str(f) for f in files]
    assert got.column("label").to_pylist() == want.column("label").to_pylist()


def test_a_merge_killed_half_way_leaves_nothing_behind(gallery, tiny, tmp_path):
    write_scans(tmp_path / "in", 3)
    out = tmp_path / "res.parquet"
    stale = tmp_path / ".tmp-res.parquet.abc123"
    stale.write_bytes(b"")  # what a kill during the final merge leaves
    bulk([tmp_path / "in"], gallery, out, tiny)
    assert not stale.exists() and pq.read_table(out).num_rows == 3
    assert sorted(os.listdir(tmp_path)) == sorted(["in", "gallery", "gallery-register", "res.parquet"])


def test_a_register_walk_does_not_follow_directory_links(tiny, tmp_path):
    reg = tmp_path / "reg"
    for lab in ("a", "b"):
        (reg / lab).mkdir(parents=True)
        cv2.imwrite(str(reg / lab / "x.png"), scan(ord(lab) + 40))
    os.symlink("..", reg / "a" / "up")  # would register the whole tree again under a/up/...
    g = Gallery.build(reg, tmp_path / "g", tiny, force=True)
    assert g.count == 2 and sorted(g.label_counts()) == ["a", "b"]


def test_indexer_add_names_a_broken_link(tiny, tmp_path, gallery):
    from indexer.errors import BadImagesError

    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "broken.jpg")
    with pytest.raises(BadImagesError, match="broken symbolic link"):
        gallery.add([tmp_path / "broken.jpg"], label="x")
