"""Gallery store: layout, labels, duplicates, safety (atomic commits, locks, encoder checks), search."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import encoders
import faiss
from indexer import (BadImagesError, EncoderMismatchError, Gallery, GalleryError, GalleryLockedError, LabelError,
                     NearDuplicateError, NotAGalleryError, UnknownItemsError, make_index)
from indexer.errors import GalleryCorruptError
from indexer.export import export_parquet
from indexer.index import PAD_SCORE
from indexer.items import SCHEMA
from indexer.verify import verify
from indexer_testdata import bad_files, make_register, near_copy, write_image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return encoders.load(tiny_model_path)


@pytest.fixture(scope="module")
def other(other_tiny_model_path):
    return encoders.load(other_tiny_model_path)


@pytest.fixture()
def built(tmp_path, tiny) -> Gallery:
    reg = make_register(tmp_path / "reg", {"invoice": 2, "passport": 2, "receipt": 1})
    return Gallery.build(reg, tmp_path / "gal", tiny)


def _files(g: Gallery) -> set[str]:
    return {p.name for p in g.path.iterdir()}


# ------------------------------------------------------------------------------ build / layout
def test_build_writes_manifest_items_and_flat_idmap_index(built, tiny):
    m = built.manifest
    assert m["format_version"] == 1 and m["generation"] == 1
    assert m["encoder"] == {"name": tiny.name, "fingerprint": tiny.fingerprint, "dim": tiny.dim,
                            "path": str(Path(tiny.path).resolve())}  # found again without --model
    assert (m["metric"], m["index_spec"], m["count"], m["labels"], m["next_id"]) == ("inner_product", "flat", 5, 3, 5)
    assert m["calibration"] is None and m["near_duplicate_bound"] == pytest.approx(0.97)
    assert _files(built) >= {"manifest.json", m["index_file"], m["items_file"]}
    assert built.items.schema.equals(SCHEMA)
    assert built.items.column("id").to_pylist() == [0, 1, 2, 3, 4]
    assert built.label_counts() == {"invoice": 2, "passport": 2, "receipt": 1}
    assert all(Path(s).is_absolute() and Path(s).is_file() for s in built.items.column("source").to_pylist())
    assert all(len(h) == 64 for h in built.items.column("sha256").to_pylist())
    on_disk = faiss.read_index(str(built.path / m["index_file"]))
    assert isinstance(on_disk, faiss.IndexIDMap2)
    assert isinstance(faiss.downcast_index(on_disk.index), faiss.IndexFlatIP)
    assert json.loads((built.path / "manifest.json").read_text())["generation"] == 1


def test_search_finds_each_exemplar_and_labels_of_maps_ids(built, tiny):
    sources = built.items.column("source").to_pylist()
    scores, ids = built.search(tiny.encode(sources), k=3)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (5, 3)
    np.testing.assert_array_equal(ids[:, 0], built.items.column("id").to_numpy())
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    labels = built.labels_of(ids)
    assert labels.shape == (5, 3)
    assert labels[:, 0].tolist() == built.items.column("label").to_pylist()
    assert built.labels_of(np.array([-1, 0])).tolist() == ["", "invoice"]
    with pytest.raises(GalleryError, match="ids not in gallery"):
        built.labels_of([999])


def test_search_validates_dim_clips_k_and_handles_empty(built, tiny, tmp_path):
    with pytest.raises(GalleryError, match=r"holds 16-d vectors") as exc:
        built.search(np.zeros((2, 8), np.float32), 1)
    assert str(built.path) in str(exc.value) and "2x8" in str(exc.value)
    scores, ids = built.search(tiny.encode(built.items.column("source").to_pylist()[0]), k=50)
    assert ids.shape == (1, 5) and (ids >= 0).all()
    one_d = built.search(tiny.encode(built.items.column("source").to_pylist()[0])[0], k=1)[1]
    assert one_d.shape == (1, 1)
    empty = Gallery.create(tmp_path / "empty", tiny)
    s, i = empty.search(np.ones((2, tiny.dim), np.float32), k=4)
    assert i.shape == (2, 4) and (i == -1).all() and np.all(s == PAD_SCORE)
    assert empty.labels_of(i).tolist() == [[""] * 4] * 2
    with pytest.raises(GalleryError, match="k must be"):
        built.search(np.ones((1, tiny.dim), np.float32), 0)


def test_open_refuses_missing_or_foreign_directories(tmp_path, tiny):
    with pytest.raises(NotAGalleryError, match="manifest.json"):
        Gallery.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(GalleryError, match="not valid JSON"):
        Gallery.open(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "README.txt").write_text("mine")
    reg = make_register(tmp_path / "reg", {"a": 1})
    with pytest.raises(GalleryError, match="holds other files"):
        Gallery.build(reg, tmp_path / "x", tiny)


def test_make_index_is_the_one_constructor(tiny):
    index = make_index("flat", 8)
    assert isinstance(index, faiss.IndexIDMap2) and index.d == 8
    with pytest.raises(GalleryError, match=r"'HNSW32' is not supported.*flat"):
        make_index("HNSW32", 8)


# ------------------------------------------------------------------------------ labels
def test_folder_mode_nested_labels_hidden_and_non_images_skipped(tmp_path, tiny):
    reg = make_register(tmp_path / "reg", {"passport/de": 1, "passport/fr": 1, "visa": 1})
    write_image(reg / "visa" / "UPPER.JPG", "visa", 5)
    write_image(reg / "visa" / ".hidden.png", "hidden", 0)
    write_image(reg / ".trash" / "x.png", "trash", 0)
    (reg / "visa" / "notes.txt").write_text("ignored")
    g = Gallery.build(reg, tmp_path / "gal", tiny)
    assert g.label_counts() == {"passport/de": 1, "passport/fr": 1, "visa": 2}
    assert not any("hidden" in s or ".trash" in s for s in g.items.column("source").to_pylist())


def test_folder_mode_refuses_images_in_register_root(tmp_path, tiny):
    reg = make_register(tmp_path / "reg", {"a": 1})
    loose = write_image(reg / "loose.png", "loose")
    with pytest.raises(LabelError, match="register root") as exc:
        Gallery.build(reg, tmp_path / "gal", tiny)
    assert str(loose) in str(exc.value) and "--label-mode file" in str(exc.value)
    assert not (tmp_path / "gal" / "manifest.json").exists()


def test_file_mode_labels_from_folders_and_stem(tmp_path, tiny):
    reg = tmp_path / "reg"
    write_image(reg / "root.png", "root")
    write_image(reg / "id" / "de.png", "id-de")
    write_image(reg / "id" / "eu" / "fr.jpg", "id-fr")
    g = Gallery.build(reg, tmp_path / "gal", tiny, label_mode="file")
    assert g.label_counts() == {"id_de": 1, "id_eu_fr": 1, "root": 1}
    assert g.manifest["label_mode"] == "file"


def test_file_mode_collisions_refused_listing_both_files(tmp_path, tiny):
    reg = tmp_path / "reg"
    a = write_image(reg / "a_b.png", "x")
    b = write_image(reg / "a" / "b.jpg", "y")
    c = write_image(reg / "k.png", "k")
    d = write_image(reg / "k.jpg", "k2")
    with pytest.raises(LabelError) as exc:
        Gallery.build(reg, tmp_path / "gal", tiny, label_mode="file")
    msg = str(exc.value)
    assert all(str(p) in msg for p in (a, b, c, d)) and "'a_b'" in msg and "'k'" in msg
    assert not (tmp_path / "gal").exists()


def test_file_mode_add_refuses_relabelling_existing_label(tmp_path, tiny):
    reg = tmp_path / "reg"
    write_image(reg / "form.png", "form")
    g = Gallery.build(reg, tmp_path / "gal", tiny, label_mode="file")
    new = tmp_path / "new"
    write_image(new / "form.png", "form", 9)  # other bytes, same derived label
    with pytest.raises(LabelError, match=r"'form' is already in the gallery"):
        g.add([new])
    assert g.count == 1
    assert g.add([new / "form.png"], label="form").added == 1  # explicit label: a second exemplar


# ------------------------------------------------------------------------------ add
def test_add_directories_and_labelled_files(built, tmp_path):
    new = make_register(tmp_path / "new", {"visa": 2})
    r = built.add([new])
    assert r.added == 2 and r.added_ids == [5, 6] and built.label_counts()["visa"] == 2
    f1 = write_image(tmp_path / "loose" / "one.png", "permit", 0)
    f2 = write_image(tmp_path / "loose" / "two.png", "permit", 1)
    assert built.add([f1, f2], label="permit").added == 2
    d = make_register(tmp_path / "labelled", {"whatever/deep": 2})
    assert built.add([d], label="licence").added == 2  # --label wins over folder names
    assert built.label_counts()["licence"] == 2
    assert built.generation == 4 and built.manifest["next_id"] == 11
    with pytest.raises(LabelError, match="needs --label"):
        built.add([f1])
    with pytest.raises(BadImagesError, match="file not found"):
        built.add([tmp_path / "nope.png"], label="x")


def test_same_bytes_are_skipped_with_a_message(built, tmp_path):
    src = Path(built.items.column("source").to_pylist()[0])
    copy = tmp_path / "copy.png"
    copy.write_bytes(src.read_bytes())
    r = built.add([copy], label="other")
    assert r.added == 0 and built.count == 5 and built.generation == 1
    assert len(r.skipped) == 1 and str(copy) in r.skipped[0] and "already registered" in r.skipped[0]
    twin = tmp_path / "twin.png"
    twin.write_bytes(src.read_bytes())
    fresh = write_image(tmp_path / "fresh.png", "fresh")
    again = write_image(tmp_path / "fresh2.png", "fresh")  # same picture, same bytes as `fresh`
    r = built.add([fresh, again, twin], label="fresh")
    assert r.added == 1 and len(r.skipped) == 2
    assert any("in this batch" in s for s in r.skipped)


def test_near_duplicates_under_other_labels_refused_unless_forced(built, tmp_path):
    src = Path(built.items.column("source").to_pylist()[0])  # an 'invoice'
    nd = near_copy(src, tmp_path / "nd.png")
    with pytest.raises(NearDuplicateError) as exc:
        built.add([nd], label="receipt")
    msg = str(exc.value)
    assert str(nd) in msg and str(src) in msg and "'invoice'" in msg and "--force" in msg
    assert built.count == 5 and built.generation == 1
    assert built.add([nd], label="invoice").added == 1  # same label: just another exemplar
    nd2 = near_copy(nd, tmp_path / "nd2.png")
    r = built.add([nd2], label="receipt", force=True)
    assert r.added == 1 and r.near_duplicates and "cosine" in r.near_duplicates[0]


def test_near_duplicates_within_a_build_are_refused(tmp_path, tiny):
    reg = make_register(tmp_path / "reg", {"a": 1, "b": 1})
    near_copy(reg / "a" / "0.png", reg / "b" / "copy_of_a.png")
    with pytest.raises(NearDuplicateError, match="copy_of_a"):
        Gallery.build(reg, tmp_path / "gal", tiny)
    g = Gallery.build(reg, tmp_path / "gal", tiny, force=True)
    assert g.count == 3 and len(g.last_result.near_duplicates) == 1


def test_unreadable_batch_adds_nothing_and_names_every_bad_file(built, tmp_path):
    bad = bad_files(tmp_path / "batch")
    write_image(tmp_path / "batch" / "good.png", "good")
    with pytest.raises(BadImagesError) as exc:
        built.add([tmp_path / "batch"], label="new")
    msg = str(exc.value)
    assert len(exc.value.problems) == 3 and "3 of 4 images" in msg
    assert all(str(p) in msg for p in bad)
    assert "empty file" in msg and "text" in msg and "truncated JPEG" in msg
    assert built.count == 5 and built.generation == 1 and Gallery.open(built.path).count == 5


# ------------------------------------------------------------------------------ encoder / lock safety
def test_encoder_mismatch_refused_naming_both_fingerprints(built, tiny, other, tmp_path):
    with pytest.raises(EncoderMismatchError) as exc:
        Gallery.open(built.path, other)
    msg = str(exc.value)
    assert tiny.fingerprint in msg and other.fingerprint in msg and "rebuild" in msg
    g = Gallery.open(built.path)  # no encoder: inspection only
    with pytest.raises(EncoderMismatchError):
        g.add([write_image(tmp_path / "n.png", "n")], label="n", encoder=other)
    with pytest.raises(GalleryError, match="needs an encoder"):
        g.add([tmp_path / "n.png"], label="n")


def test_lock_held_by_another_writer_fails_with_lock_message(built, tiny, tmp_path):
    import filelock

    f = write_image(tmp_path / "n.png", "n")
    g = Gallery.open(built.path, tiny, lock_timeout=0.2)
    with filelock.FileLock(str(built.path / ".lock")):
        with pytest.raises(GalleryLockedError) as exc:
            g.add([f], label="n")
        assert str(built.path / ".lock") in str(exc.value)
        with pytest.raises(GalleryLockedError):
            g.remove(labels=["invoice"])
    assert g.count == 5
    assert g.add([f], label="n").added == 1


def test_concurrent_writers_do_not_lose_updates(built, tiny_model_path, tmp_path):
    files = {lab: write_image(tmp_path / f"{lab}.png", lab) for lab in ("left", "right")}
    errors: list[BaseException] = []

    def writer(label: str) -> None:
        try:
            g = Gallery.open(built.path, encoders.load(tiny_model_path), lock_timeout=30)
            g.add([files[label]], label=label)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(lab,)) for lab in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    g = Gallery.open(built.path)
    assert g.count == 7 and {"left", "right"} <= set(g.label_counts())
    assert g.generation == 3 and sorted(g.items.column("id").to_pylist()) == list(range(7))


# ------------------------------------------------------------------------------ remove / ids / generations
def test_remove_by_label_and_id_ids_never_reused(built, tmp_path):
    gone = built.remove(labels=["passport"], ids=[4])
    assert gone == [2, 3, 4] and built.count == 2 and set(built.label_counts()) == {"invoice"}
    assert Gallery.open(built.path).count == 2
    with pytest.raises(UnknownItemsError) as exc:
        built.remove(labels=["passport", "invoice"], ids=[77])
    assert "'passport'" in str(exc.value) and "77" in str(exc.value) and built.count == 2
    r = built.add([make_register(tmp_path / "more", {"visa": 1})])
    assert r.added_ids == [5]
    built.remove(ids=[5])
    assert built.add([write_image(tmp_path / "z.png", "zz")], label="z").added_ids == [6]
    assert built.manifest["next_id"] == 7


def test_only_current_and_previous_generations_are_kept(built, tmp_path):
    for i in range(3):
        built.add([write_image(tmp_path / f"{i}.png", f"lab{i}")], label=f"lab{i}")
    m = built.manifest
    assert m["generation"] == 4 and m["previous"]["generation"] == 3
    gen_files = {n for n in _files(built) if n.startswith(("index-", "items-"))}
    assert gen_files == {m["index_file"], m["items_file"], m["previous"]["index_file"],
                         m["previous"]["items_file"]}


def test_rollback_restores_previous_generation_without_reusing_ids(built, tmp_path):
    built.add([write_image(tmp_path / "x.png", "x")], label="x")
    assert built.count == 6
    built.rollback()
    assert built.count == 5 and "x" not in built.label_counts() and built.generation == 3
    assert Gallery.open(built.path).count == 5 and built.manifest["next_id"] == 6
    assert built.add([write_image(tmp_path / "y.png", "y")], label="y").added_ids == [6]
    built.rollback()
    built.rollback()  # rolling back the rollback redoes the add
    assert "y" in built.label_counts()


def test_set_calibration_is_stored_atomically_and_survives_reopen(built):
    table = {"table": [{"fpr": 0.01, "tpr": 0.9, "threshold": 0.42}], "source": "unit test"}
    built.set_calibration(table)
    assert built.calibration == table and built.generation == 2
    g = Gallery.open(built.path)
    assert g.calibration == table and g.manifest["index_file"] == built.manifest["index_file"]
    with pytest.raises(GalleryError, match="JSON"):
        built.set_calibration({"x": float("nan")})
    with pytest.raises(GalleryError, match="dict"):
        built.set_calibration([1, 2])  # type: ignore[arg-type]
    built.set_calibration(None)
    assert Gallery.open(built.path).calibration is None


def test_build_over_existing_gallery_needs_overwrite_and_continues_ids(built, other, tmp_path):
    reg = make_register(tmp_path / "reg2", {"z": 2})
    with pytest.raises(GalleryError, match="already a gallery"):
        Gallery.build(reg, built.path, other)
    g = Gallery.build(reg, built.path, other, overwrite=True)
    assert g.items.column("id").to_pylist() == [5, 6] and g.encoder_info["fingerprint"] == other.fingerprint
    g.rollback()
    assert g.count == 5 and g.encoder_info["name"] == "tiny-test-model"


# ------------------------------------------------------------------------------ crash safety
def _crashing_add(gallery: Path, model: Path, new_dir: Path, point: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCRETRIEVER_TEST_CRASH_AT": point, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "indexer", "add", str(gallery), str(new_dir), "--model", str(model)],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("point", ["after-index-write", "after-items-write", "before-manifest-write"])
def test_writer_killed_mid_commit_leaves_previous_generation(built, tiny, tiny_model_path, tmp_path, point):
    before = built.manifest
    new = make_register(tmp_path / "new", {"visa": 2})
    proc = _crashing_add(built.path, tiny_model_path, new, point)
    assert proc.returncode == -9, proc.stderr  # SIGKILLed at the hook
    assert any(n.startswith("index-0002") for n in _files(built))  # the new generation was half-written
    g = Gallery.open(built.path, tiny)
    assert g.manifest == before and g.count == 5 and "visa" not in g.label_counts()
    rep = verify(g, tiny, sample=5)
    assert rep.ok, rep.problems
    assert rep.reencoded == 5 and any("interrupted write" in n for n in rep.notes)
    r = g.add([new])  # the next writer succeeds and clears the leftovers
    assert r.added == 2 and g.generation == 2
    assert not verify(g, tiny, sample=0).notes


def test_writer_killed_after_manifest_switch_shows_new_generation(built, tiny, tiny_model_path, tmp_path):
    new = make_register(tmp_path / "new", {"visa": 2})
    proc = _crashing_add(built.path, tiny_model_path, new, "after-manifest-write")
    assert proc.returncode == -9, proc.stderr
    g = Gallery.open(built.path, tiny)
    assert g.generation == 2 and g.label_counts()["visa"] == 2
    assert verify(g, tiny, sample=10).ok


# ------------------------------------------------------------------------------ verify / export
def _reseal(path: Path) -> None:
    """Record the current files' checksums in the manifest (a tamperer who also rewrites the manifest)."""
    import json

    from indexer.integrity import file_sha256

    mp = path / "manifest.json"
    m = json.loads(mp.read_text())
    m["checksums"] = {n: file_sha256(path / n) for n in m["checksums"]}
    mp.write_text(json.dumps(m))


def test_verify_flags_tampered_vectors_and_notes_moved_sources(built, tiny):
    rep = verify(built, tiny, sample=10)
    assert rep.ok and rep.reencoded == 5
    m = built.manifest
    index = faiss.read_index(str(built.path / m["index_file"]))
    ids, vecs = built.vectors()
    vecs[0] = vecs[1]  # id 0 now stores another image's vector
    fake = make_index("flat", built.dim)
    fake.add_with_ids(vecs, ids)
    faiss.write_index(fake, str(built.path / m["index_file"]))
    assert index.ntotal == fake.ntotal
    moved = Path(built.items.column("source").to_pylist()[4])
    moved.rename(moved.with_suffix(".moved"))
    with pytest.raises(GalleryCorruptError, match=rf"{m['index_file']}: checksum mismatch.*indexer rollback"):
        Gallery.open(built.path)  # the file changed after it was written: no answers from it
    _reseal(built.path)  # as if the writer itself had stored the wrong vector: only re-encoding can tell
    rep = verify(Gallery.open(built.path), tiny, sample=10)
    assert not rep.ok and len(rep.problems) == 1 and "id 0" in rep.problems[0]
    assert any("no longer exist" in n for n in rep.notes)


def test_verify_reports_index_items_disagreement(built, tiny):
    m = built.manifest
    # id 4 renamed 42 in the items table; the counts still agree, so open() accepts it
    ids = pa.array([0, 1, 2, 3, 42], pa.int64())
    items = built.items.set_column(0, SCHEMA.field("id"), ids)
    pq.write_table(items, str(built.path / m["items_file"]))
    _reseal(built.path)
    rep = verify(Gallery.open(built.path), tiny, sample=0)
    assert not rep.ok
    text = "\n".join(rep.problems)
    assert "[42]" in text and "[4]" in text


def test_export_parquet_has_vectors_and_encoder_metadata(built, tiny, tmp_path):
    out = tmp_path / "out" / "g.parquet"
    assert export_parquet(built, out) == 5
    t = pq.read_table(out)
    assert t.column_names == ["id", "label", "source", "sha256", "vector"]
    assert t.schema.field("vector").type == pa.list_(pa.float32(), tiny.dim)
    meta = t.schema.metadata
    assert meta[b"docretriever.encoder.fingerprint"].decode() == tiny.fingerprint
    assert meta[b"docretriever.encoder.name"].decode() == tiny.name
    assert int(meta[b"docretriever.encoder.dim"]) == tiny.dim
    vec = np.asarray(t.column("vector").to_pylist(), np.float32)
    fresh = tiny.encode(t.column("source").to_pylist())
    np.testing.assert_allclose(np.sum(vec * fresh, axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------ end to end, shipped model
def test_end_to_end_with_shipped_model(tmp_path, encoder):
    reg = make_register(tmp_path / "reg", {"alpha": 1, "beta": 1, "gamma": 1})
    g = Gallery.build(reg, tmp_path / "gal", encoder, force=True)
    assert g.dim == encoder.dim and g.encoder_info["fingerprint"] == encoder.fingerprint
    scores, ids = g.search(encoder.encode(g.items.column("source").to_pylist()), k=1)
    assert g.labels_of(ids[:, 0]).tolist() == ["alpha", "beta", "gamma"]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)
    rep = verify(Gallery.open(g.path, encoder), encoder, sample=3)
    assert rep.ok and rep.reencoded == 3


# ------------------------------------------------------------------------------ readers vs writers
def test_reader_retries_when_a_writer_prunes_the_generation_it_was_opening(built, tiny, tmp_path, monkeypatch):
    import indexer.index as index_mod

    original = index_mod.read_index
    calls = []

    def racing_read(path):
        if not calls:  # between our manifest read and our file read, two commits happen elsewhere
            calls.append(path)
            writer = Gallery.open(built.path, tiny)
            writer.add([write_image(tmp_path / "a.png", "a")], label="a")
            writer.add([write_image(tmp_path / "b.png", "b")], label="b")
            assert not Path(path).exists()  # generation 1 was pruned under the reader's feet
        return original(path)

    monkeypatch.setattr(index_mod, "read_index", racing_read)
    g = Gallery.open(built.path)
    assert calls and g.generation == 3 and g.count == 7


def test_missing_generation_file_is_reported_with_rollback_hint(built, tmp_path):
    built.add([write_image(tmp_path / "a.png", "a")], label="a")
    (built.path / built.manifest["items_file"]).unlink()
    with pytest.raises(GalleryError, match=r"missing: .*items-0002\.parquet.*indexer rollback"):
        Gallery.open(built.path)
    g = Gallery.rollback_at(built.path)
    assert g.count == 5 and g.generation == 3


def test_near_duplicate_bound_is_stored_and_overridable(tmp_path, tiny):
    reg = make_register(tmp_path / "reg", {"a": 1, "b": 1})
    g = Gallery.build(reg, tmp_path / "gal", tiny, near_duplicate_bound=0.999)
    assert g.manifest["near_duplicate_bound"] == pytest.approx(0.999)
    src = Path(g.items.column("source").to_pylist()[0])
    other_label_img = write_image(tmp_path / "other.png", "zzz")
    cos = float(tiny.encode([src])[0] @ tiny.encode([other_label_img])[0])
    assert cos < 0.9  # clearly different pictures
    with pytest.raises(NearDuplicateError, match=r"cosine >= -1"):
        g.add([other_label_img], label="c", near_duplicate_bound=-1.0)  # everything counts as near
    assert g.add([other_label_img], label="c").added == 1
