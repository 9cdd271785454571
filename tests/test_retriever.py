"""Retriever end to end on a tiny random model and generated drawings; the compat DocClassifier."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import encoders
from encoders.contract import ThresholdRow, write_contract
from retriever import DocClassifier, Result, Retriever, default_register_dir
from retriever.memory import MemoryGallery
from retriever.retriever import RetrieverError
from retriever.thresholds import NoThresholdTableError, to_reference_score

LOOSE, STRICT = 0.5, 0.99  # cosine thresholds; the tiny model's near-copies score > 0.999


def doc_image(seed: int) -> np.ndarray:
    """A small 'document': coloured stock with a few filled shapes; every seed looks different."""
    r = np.random.default_rng(seed)
    img = np.full((96, 72, 3), r.integers(0, 256, 3), np.uint8)
    for _ in range(6):
        c = tuple(int(x) for x in r.integers(0, 256, 3))
        x, y = int(r.integers(0, 60)), int(r.integers(0, 80))
        cv2.rectangle(img, (x, y), (x + int(r.integers(8, 30)), y + int(r.integers(8, 30))), c, -1)
    cv2.circle(img, (int(r.integers(10, 60)), int(r.integers(10, 80))), 10,
               tuple(int(x) for x in r.integers(0, 256, 3)), -1)
    return img


def perturb(img: np.ndarray, seed: int, amp: int = 12) -> np.ndarray:
    r = np.random.default_rng(seed)
    return np.clip(img.astype(np.int16) + r.integers(-amp, amp + 1, img.shape), 0, 255).astype(np.uint8)


def noise_image(seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (96, 72, 3)).astype(np.uint8)


LABELS = ["invoice", "passport", "receipt", "id_card", "letter"]


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model_path):
    return encoders.load(tiny_model_path)


@pytest.fixture
def register(tmp_path) -> dict[str, Path]:
    """One exemplar image per label, written as PNG files."""
    out = {}
    for i, lab in enumerate(LABELS):
        p = tmp_path / "register" / lab / "front.png"
        p.parent.mkdir(parents=True)
        cv2.imwrite(str(p), doc_image(i))
        out[lab] = p
    return out


def make_gallery(kind: str, images: list[np.ndarray], labels: list[str], encoder, root: Path):
    """The same exemplars as an in-memory gallery or as a real on-disk indexer Gallery."""
    if kind == "memory":
        return MemoryGallery(encoder.encode(images), labels, encoder, name="test-gallery")
    from indexer.gallery import Gallery

    reg = root / "reg"
    for i, (img, lab) in enumerate(zip(images, labels)):
        (reg / lab).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(reg / lab / f"{i:03d}.png"), img)
    return Gallery.build(reg, root / "gallery", encoder, label_mode="folder", force=True)


@pytest.fixture(params=["memory", "faiss"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def gallery(kind, tiny_encoder, tmp_path):
    return make_gallery(kind, [doc_image(i) for i in range(len(LABELS))], LABELS, tiny_encoder, tmp_path)


def test_perturbed_copy_is_classified_and_accepted(gallery, tiny_encoder, tmp_path):
    r = Retriever(gallery, tiny_encoder, threshold=LOOSE, top_k=3)
    q = tmp_path / "query.png"
    cv2.imwrite(str(q), perturb(doc_image(LABELS.index("receipt")), seed=100))
    res = r.classify_one(q)
    assert isinstance(res, Result)
    assert res.label == "receipt" and res.accepted
    assert res.source == str(q)
    assert res.threshold == LOOSE
    assert -1.0 <= res.score <= 1.0 and res.score > 0.99
    assert [lab for lab, _ in res.top_k][0] == "receipt" and len(res.top_k) == 3
    assert res.margin == pytest.approx(res.score - res.top_k[1][1])
    assert res.reference_score == pytest.approx((res.score + 1) / 2)


def test_unrelated_image_is_rejected_at_strict_threshold(gallery, tiny_encoder):
    r = Retriever(gallery, tiny_encoder, threshold=STRICT)
    bad = r.classify_one(noise_image())
    assert not bad.accepted and bad.score < STRICT
    assert bad.label in LABELS  # the best label is still reported, with accepted=False
    good = r.classify_one(perturb(doc_image(0), seed=5))
    assert good.accepted and good.label == "invoice"


def test_top_k_lists_distinct_labels_when_one_label_has_many_exemplars(kind, tiny_encoder, tmp_path):
    base = doc_image(42)
    rich = [perturb(base, seed=s, amp=4) for s in range(40)]  # 40 near-copies of the query
    others = [doc_image(200 + i) for i in range(4)]
    labels = ["rich"] * len(rich) + [f"other{i}" for i in range(4)]
    g = make_gallery(kind, rich + others, labels, tiny_encoder, tmp_path)
    feats = tiny_encoder.encode(rich + others)
    r = Retriever(g, tiny_encoder, threshold=LOOSE, top_k=3)
    res = r.classify_one(perturb(base, seed=999, amp=4))
    names = [lab for lab, _ in res.top_k]
    assert names[0] == "rich"
    assert len(names) == 3 and len(set(names)) == 3
    # Each label is scored by its best exemplar: check against a brute-force computation.
    q = tiny_encoder.encode([perturb(base, seed=999, amp=4)])[0]
    sims = feats @ q
    for lab, s in res.top_k:
        assert s == pytest.approx(max(sims[i] for i, x in enumerate(labels) if x == lab), abs=1e-5)
    # Asking for more labels than exist returns them all, still distinct.
    r_all = Retriever(g, tiny_encoder, threshold=LOOSE, top_k=10)
    assert sorted(lab for lab, _ in r_all.classify_one(base).top_k) == sorted(set(labels))


def test_feature_path_equals_image_path(gallery, tiny_encoder, register):
    r = Retriever(gallery, tiny_encoder, threshold=LOOSE)
    paths = list(register.values())
    by_image = r.classify(paths)
    by_feats = r.classify_features(tiny_encoder.encode(paths), sources=[str(p) for p in paths])
    assert [x.to_dict() for x in by_image] == [x.to_dict() for x in by_feats]
    assert [x.label for x in by_image] == LABELS
    # A single (dim,) vector is one query.
    one = r.classify_features(tiny_encoder.encode(paths[:1])[0])
    assert len(one) == 1 and one[0].label == LABELS[0]
    with pytest.raises(RetrieverError, match="shape"):
        r.classify_features(np.zeros((2, tiny_encoder.dim + 1), np.float32))


def test_inputs_may_be_paths_bytes_or_arrays(gallery, tiny_encoder, register):
    r = Retriever(gallery, tiny_encoder, threshold=LOOSE)
    p = register["passport"]
    results = r.classify([p, p.read_bytes(), cv2.imread(str(p))])
    assert [x.label for x in results] == ["passport"] * 3
    assert [x.source for x in results] == [str(p), None, None]
    assert results[0].score == pytest.approx(results[1].score, abs=1e-6)


def test_classify_iter_carries_on_past_a_bad_file(gallery, tiny_encoder, register, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    r = Retriever(gallery, tiny_encoder, threshold=LOOSE)
    inputs = [register["invoice"], bad, tmp_path / "missing.png", register["letter"]]
    out = list(r.classify_iter(inputs, batch_size=2))
    assert [src for src, _ in out] == inputs
    assert isinstance(out[0][1], Result) and out[0][1].label == "invoice"
    assert isinstance(out[1][1], encoders.DecodeError) and str(bad) in str(out[1][1])
    assert isinstance(out[2][1], encoders.DecodeError) and "not found" in str(out[2][1])
    assert isinstance(out[3][1], Result) and out[3][1].label == "letter"
    # the list API gives the same per-input outcome: error results, never accepted, the rest classified
    res = r.classify(inputs)
    assert [x.label for x in res] == ["invoice", "", "", "letter"]
    assert [x.error is None for x in res] == [True, False, False, True] and "not found" in res[2].error
    assert not res[1].accepted and not res[2].accepted and res[1].source == str(bad)
    assert res[1].to_dict() == {"source": str(bad), "page": 0, "error": res[1].error}


def test_result_to_dict_is_json_ready(gallery, tiny_encoder, register):
    res = Retriever(gallery, tiny_encoder, threshold=LOOSE, top_k=2).classify_one(register["letter"])
    d = json.loads(json.dumps(res.to_dict()))
    assert d["label"] == "letter" and d["accepted"] is True
    assert set(d) == {"source", "page", "error", "label", "score", "accepted", "threshold", "margin", "top_k",
                      "decision_score", "rule"}
    assert [t["label"] for t in d["top_k"]][0] == "letter" and len(d["top_k"]) == 2


def test_encoder_mismatch_is_refused(kind, gallery, other_tiny_model_path):
    from indexer.errors import EncoderMismatchError

    other = encoders.load(other_tiny_model_path)
    with pytest.raises(EncoderMismatchError) as exc:
        Retriever(gallery, other, threshold=LOOSE)
    msg = str(exc.value)
    assert "tiny-test-model" in msg and "tiny-other" in msg
    if kind == "faiss":  # opened from its path: Gallery.open refuses, and the message surfaces
        with pytest.raises(EncoderMismatchError, match="tiny-other"):
            Retriever(str(gallery.path), other, threshold=LOOSE)


def test_gallery_path_and_reload(tiny_encoder, tmp_path):
    g = make_gallery("faiss", [doc_image(0), doc_image(1)], ["invoice", "passport"], tiny_encoder, tmp_path)
    r = Retriever(g.path, tiny_encoder, threshold=LOOSE, top_k=5)
    assert r.count == 2 and r.n_labels == 2
    query = perturb(doc_image(2), seed=1)
    assert r.classify_one(query).label != "receipt"
    extra = tmp_path / "receipt.png"
    cv2.imwrite(str(extra), doc_image(2))
    from indexer.gallery import Gallery

    Gallery.open(g.path, tiny_encoder).add([extra], label="receipt", force=True)
    assert r.classify_one(query).label != "receipt"  # a snapshot until reloaded
    r.reload()
    assert r.count == 3 and r.classify_one(query).label == "receipt"


def test_threshold_from_table_or_explicit(kind, gallery, tiny_encoder, tiny_model_path, tmp_path):
    with pytest.raises(NoThresholdTableError, match="retriever calibrate"):
        Retriever(gallery, tiny_encoder)  # the tiny model has no table
    rows = (ThresholdRow(1e-3, 0.8, 0.9), ThresholdRow(1e-2, 0.9, 0.8), ThresholdRow(1e-1, 0.99, 0.6))
    model = tabled_model(tiny_model_path, tmp_path, rows)
    enc = encoders.load(model)
    g = make_gallery(kind, [doc_image(0), doc_image(1)], ["a", "b"], enc, tmp_path / "t")
    assert Retriever(g, enc).threshold == 0.8  # default fpr=1e-2
    assert Retriever(g, enc, fpr=5e-3).threshold == 0.9  # conservative row
    assert Retriever(g, enc, fpr=5e-3, threshold=0.1).threshold == 0.1  # explicit wins
    calibration = {"threshold_table": [{"fpr": 1e-2, "tpr": 0.5, "threshold": 0.95}], "source": "mine"}
    if kind == "memory":
        g.calibration = calibration
    else:
        g.set_calibration(calibration)
    r = Retriever(g, enc)
    assert r.threshold == 0.95 and "mine" in r.threshold_origin
    with pytest.raises(RetrieverError):
        Retriever(g, enc, threshold=1.5)


def test_empty_gallery_is_refused(tiny_encoder):
    g = MemoryGallery(np.zeros((0, tiny_encoder.dim), np.float32), [], tiny_encoder, name="empty-one")
    with pytest.raises(RetrieverError, match="empty-one.*empty"):
        Retriever(g, tiny_encoder, threshold=LOOSE)


def tabled_model(tiny_model_path: Path, tmp_path: Path, rows) -> Path:
    """A copy of the tiny model whose contract carries a threshold table."""
    out = tmp_path / "tabled.onnx"
    shutil.copy(tiny_model_path, out)
    contract = encoders.load(out).contract.with_thresholds(list(rows), "test table")
    write_contract(str(out), contract)
    return out


# --- the reference-compatible DocClassifier --------------------------------------------------
@pytest.fixture
def reference_register(tmp_path) -> Path:
    root = tmp_path / "refreg"
    (root / "ids").mkdir(parents=True)
    cv2.imwrite(str(root / "ids" / "tw.png"), doc_image(0))
    cv2.imwrite(str(root / "passport.jpg"), doc_image(1))
    cv2.imwrite(str(root / "ids" / "jp.png"), doc_image(2))
    (root / "notes.txt").write_text("ignored")
    return root


def test_doc_classifier_returns_reference_scale(reference_register, tiny_model_path):
    clf = DocClassifier(register_root=reference_register, threshold=0.75, model_cfg=tiny_model_path)
    assert sorted(clf.bank) == ["ids_jp", "ids_tw", "passport"]
    assert clf.threshold == 0.75
    label, score = clf(perturb(doc_image(0), seed=3))
    assert label == "ids_tw"
    assert 0.75 <= score <= 1.0
    cos = clf.retriever.classify_one(perturb(doc_image(0), seed=3)).score
    assert score == pytest.approx(to_reference_score(cos))


def test_doc_classifier_rejects_with_none(reference_register, tiny_model_path):
    clf = DocClassifier(register_root=reference_register, threshold=0.999, model_cfg=tiny_model_path)
    label, score = clf(noise_image())
    assert label is None
    assert 0.0 <= score < 0.999


def test_doc_classifier_default_is_fpir_of_its_self_calibrated_register(reference_register, tiny_model_path):
    """No threshold given: the register measures its own open-set table at start-up (no model table
    needed) and decides at FPIR 1e-2 with the cosine + margin rule; fpir= moves the point."""
    clf = DocClassifier(register_root=reference_register, model_cfg=tiny_model_path)
    op = clf.operating_point
    rec = clf.gallery.self_calibration
    assert op.kind == "fpir" and op.target == 1e-2 and rec["status"] == "measured"
    assert op.rule.name == "cosine+margin" and clf.threshold is None  # not a cosine: see operating_point
    row = next(r for r in rec["table"] if r["fpir"] == 1e-2)
    assert op.threshold == pytest.approx(row["threshold"]) and row["measured_fpir"] <= 1e-2
    loose = DocClassifier(register_root=reference_register, model_cfg=tiny_model_path, fpir=0.2)
    assert loose.operating_point.threshold < op.threshold
    with pytest.raises(RetrieverError, match=r"\(cos\+1\)/2"):
        DocClassifier(register_root=reference_register, threshold=-0.2, model_cfg=tiny_model_path)


def test_doc_classifier_refuses_label_collisions(tmp_path, tiny_model_path):
    root = tmp_path / "clash"
    (root / "a").mkdir(parents=True)
    cv2.imwrite(str(root / "a" / "b.png"), doc_image(0))
    cv2.imwrite(str(root / "a_b.png"), doc_image(1))
    from indexer.errors import LabelError

    with pytest.raises(LabelError, match="a_b"):
        DocClassifier(register_root=root, threshold=0.7, model_cfg=tiny_model_path)


def test_default_register_dir_points_at_shipped_folder():
    d = default_register_dir()
    assert d is not None and d.name == "register_data" and d.is_dir()


@pytest.mark.parametrize("colour", ["RGB", "BGR"])
def test_to_tensor_is_the_contract_formula(colour):
    """The fused per-plane fast path computes exactly (pixel * scale - mean) / std in the contract's
    channel order, CHW, float32 (training's cached features and inference depend on it)."""
    from encoders.contract import ModelContract
    from encoders.preprocess import preprocess, to_tensor

    c = ModelContract(name="t", colour=colour, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), input_size=(32, 48))
    img = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    order = img if colour == "BGR" else img[:, :, ::-1]
    want = ((order.astype(np.float64) / 255 - np.array(c.mean)) / np.array(c.std)).transpose(2, 0, 1)
    got = to_tensor(img, c)
    assert got.dtype == np.float32 and got.shape == (3, 32, 48) and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    view = np.zeros((40, 60, 3), np.uint8)[4:36, 6:54]  # a non-contiguous crop works too
    assert to_tensor(view, c).shape == (3, 32, 48)
    assert preprocess(np.full((64, 96, 3), 255, np.uint8), c).shape == (3, 32, 48)


def test_encoder_runs_small_calls_on_cpu_with_the_same_features(tiny_model_path):
    import encoders
    from encoders.runtime import CPU_RUN_BATCH, EncoderError

    chunked = encoders.load(tiny_model_path)
    x = np.random.default_rng(0).standard_normal((11, 3, *chunked.input_size)).astype(np.float32)
    whole = encoders.load(tiny_model_path, run_batch=64)
    assert chunked.run_batch == CPU_RUN_BATCH < len(x) and whole.run_batch == 64
    calls = []
    run = chunked.session.run
    chunked.session = type("S", (), {"run": lambda self, o, f: calls.append(len(next(iter(f.values())))) or run(o, f)})()
    a, b = chunked.encode_batch(x), whole.encode_batch(x)
    assert calls == [4, 4, 3]
    assert a.shape == (11, chunked.dim) and np.allclose(a, b, atol=1e-5)
    with pytest.raises(EncoderError, match="run_batch"):
        encoders.load(tiny_model_path, run_batch=0)


def test_one_retriever_shared_by_threads_answers_like_separate_ones(tiny_model_path, tmp_path):
    """Thread safety as documented: classify/classify_features may be called from many threads at once
    (ONNX Runtime sessions and FAISS searches are re-entrant; the retriever keeps no per-call state)."""
    import threading

    import encoders
    from indexer.gallery import Gallery

    reg = tmp_path / "reg"
    for i, lab in enumerate(LABELS):
        (reg / lab).mkdir(parents=True)
        cv2.imwrite(str(reg / lab / "x.png"), doc_image(i))
    enc = encoders.load(tiny_model_path)
    g = Gallery.build(reg, tmp_path / "g", enc, self_calibrate=False)
    images = [perturb(doc_image(i % len(LABELS)), seed=i) for i in range(24)]
    want = [(r.label, round(r.score, 6), r.accepted) for r in Retriever(g.path, enc, threshold=0.5).classify(images)]
    shared = Retriever(g.path, enc, threshold=0.5)
    got: dict[int, list] = {}

    def work(t: int) -> None:
        for _ in range(5):
            got[t] = [(r.label, round(r.score, 6), r.accepted) for r in shared.classify(images, batch_size=5)]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(v == want for v in got.values())
