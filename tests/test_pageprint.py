"""Page prints (encoders.pageprint): registering a capture onto sibling exemplars tells them apart."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from encoders import pageprint as P


def _page(seed: int = 0, h: int = 700, w: int = 500) -> np.ndarray:
    """A grey page with enough structure for keypoints: boxes, rules and blocks of marks."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 235, np.uint8)
    for _ in range(40):
        x, y = int(rng.integers(10, w - 80)), int(rng.integers(10, h - 40))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 70)), y + int(rng.integers(8, 30))),
                      int(rng.integers(0, 120)), int(rng.choice([-1, 1, 2])))
    for _ in range(25):
        cv2.putText(img, "".join(rng.choice(list("ABCDEFGHKMPRSTUVWXYZ0123456789"), 6)),
                    (int(rng.integers(5, w - 150)), int(rng.integers(20, h - 10))), cv2.FONT_HERSHEY_SIMPLEX,
                    float(rng.uniform(0.4, 0.9)), int(rng.integers(0, 90)), 1, cv2.LINE_AA)
    return img


def test_a_packed_print_round_trips_and_a_bad_row_is_refused() -> None:
    p = P.of_image(cv2.cvtColor(_page(), cv2.COLOR_GRAY2BGR), keypoints=300)
    assert 0 < len(p.pts) <= 300 and p.des.shape == (len(p.pts), 128) and p.des.dtype == np.uint8
    assert max(p.size) == P.SIDE and p.grid.shape == (P.GRID, P.GRID) and p.gray is None
    row = P.pack(p, keypoints=300)
    assert row.shape == (P.row_bytes(300),) and row.dtype == np.uint8
    q = P.unpack(row, keypoints=300)
    assert q.size == p.size and np.array_equal(q.des, p.des)
    assert np.abs(q.pts - p.pts).max() <= 0.5 and np.abs(q.grid - p.grid).max() < 0.01
    with pytest.raises(ValueError, match="bytes"):
        P.unpack(row[:-1], keypoints=300)
    with pytest.raises(ValueError, match="not a packed page print"):
        P.unpack(np.full_like(row, 255), keypoints=300)
    with pytest.raises(ValueError, match="uint8"):
        P.of_image(np.zeros((4, 4), np.uint8))


def _warp(page: np.ndarray, seed: int) -> np.ndarray:
    """A photographed capture: perspective, margin of background, blur, lighting, noise."""
    rng = np.random.default_rng(seed)
    h, w = page.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = (src + rng.uniform(-0.06, 0.06, (4, 2)) * [w, h] + [0.08 * w, 0.08 * h]).astype(np.float32)
    out = cv2.warpPerspective(page, cv2.getPerspectiveTransform(src, dst), (int(1.16 * w), int(1.16 * h)),
                              borderValue=90)
    out = cv2.GaussianBlur(out, (0, 0), 1.2).astype(np.float32)
    ramp = np.linspace(0.75, 1.1, out.shape[1], dtype=np.float32)[None, :]
    out = out * ramp + rng.normal(0, 4, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("comparison", [P.RULE, P.LEARNED])
def test_a_capture_registered_onto_siblings_picks_its_own_type(comparison: str) -> None:
    base = _page(3)
    sibs = [base.copy() for _ in range(5)]
    cv2.rectangle(sibs[1], (60, 560), (200, 640), 20, -1)          # a block added
    sibs[2][40:120, 300:480] = 235                                  # a region blanked
    for i in range(4):                                              # a count of marks: 4 stars instead of 0
        cv2.circle(sibs[3], (330 + 30 * i, 660), 9, 30, -1)
    sibs[4] = cv2.flip(sibs[4][:, :250], 1).repeat(1, axis=0)       # another page of the form
    sibs[4] = np.hstack([sibs[4], base[:, 250:]])
    prints = [P.unpack(P.pack(P.of_image(s))) for s in sibs]
    hits = aligned = 0
    for j in range(len(sibs)):
        for seed in range(2):
            q = P.of_image(_warp(sibs[j], seed), keep_gray=True)
            order = np.roll(np.arange(len(sibs)), seed + j)        # candidates in another order each time
            d = P.verify_deltas(q, [prints[i] for i in order], comparison=comparison)
            assert d.shape == (len(sibs),) and abs(float(d.sum())) < 1e-4
            again = P.verify_deltas(q, [prints[i] for i in order], comparison=comparison)
            assert np.array_equal(d, again)  # the same verdict every call
            if np.any(d != 0):
                aligned += 1
                hits += int(order[int(np.argmax(d))] == j)
    assert aligned >= 8 and hits >= aligned - 1, (hits, aligned)


def test_a_capture_that_registers_onto_nothing_leaves_the_scores_alone() -> None:
    prints = [P.of_image(_page(s)) for s in (1, 2)]
    noise = np.random.default_rng(0).integers(0, 255, (600, 400)).astype(np.uint8)
    q = P.of_image(noise, keep_gray=True)
    assert np.array_equal(P.verify_deltas(q, prints), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="keep_gray"):
        P.verify_deltas(P.of_image(_page(1)), prints)


def test_a_capture_kept_as_its_grey_page_verifies_exactly_as_its_print(tmp_path) -> None:
    """Self-calibration keeps its probes as grey pages (PNG): the print made again from one has the same
    keypoints and descriptors, and verification gives the same deltas, as the capture's own print; probe
    pages stored the older way (packed capture prints) are read into the same."""
    from indexer.gallery_selfcal import _read_rows

    base = _page(3)
    sibs = [base.copy() for _ in range(3)]
    cv2.rectangle(sibs[1], (60, 560), (200, 640), 20, -1)
    sibs[2][40:120, 300:480] = 235
    cands = [P.unpack(P.pack(P.of_image(s))) for s in sibs]
    for seed, big in ((5, False), (6, True)):  # a capture smaller and one larger than the grey page kept
        cap = cv2.cvtColor(_warp(cv2.resize(base, None, fx=2, fy=2) if big else base, seed), cv2.COLOR_GRAY2BGR)
        own = P.of_image(cap, keep_gray=True)
        kept = P.StoredCapture.of_image(cap)
        assert len(kept.png) < P.capture_row_bytes() / 3  # the point: a fraction of a packed capture print
        again = kept.page_print()
        assert np.array_equal(again.pts, own.pts) and np.array_equal(again.des, own.des)
        assert np.array_equal(again.gray, own.gray) and again.size == own.size
        assert np.array_equal(P.verify_deltas(again, cands), P.verify_deltas(own, cands))
        assert np.any(P.verify_deltas(again, cands) != 0)
    legacy = tmp_path / "probes-0001.pages.npy"
    np.save(legacy, np.stack([P.pack_capture(own)]))
    (png,) = _read_rows(legacy)
    assert np.array_equal(P.StoredCapture(png).page_print().des, own.des)
    with pytest.raises(ValueError, match="at least 8"):
        P.StoredCapture.of_image(np.zeros((4, 40), np.uint8))
    with pytest.raises(ValueError, match="keypoints found at"):
        P.StoredCapture(png, side=640)


@pytest.mark.parametrize("comparison", [P.RULE, P.LEARNED])
def test_pages_printed_by_several_threads_at_once_are_the_pages_printed_one_by_one(comparison: str) -> None:
    """The bulk engine, the service and a shared Retriever print pages from several threads: each print and
    each verdict must be what one thread alone gives (OpenCV's CLAHE object keeps working buffers; one
    shared instance gave 19 of 300 concurrent prints other keypoints, and deltas up to 0.08 off)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    imgs = [cv2.cvtColor(_warp(_page(i % 5), seed=i), cv2.COLOR_GRAY2BGR) for i in range(48)]
    cands = [P.unpack(P.pack(P.of_image(_page(j)))) for j in range(3)]
    alone = [P.of_image(im, keep_gray=True) for im in imgs]
    alone_d = [P.verify_deltas(p, cands, comparison=comparison) for p in alone]
    gate = threading.Barrier(4)

    def job(i: int) -> tuple[P.PagePrint, np.ndarray]:
        if i < 4:
            gate.wait(timeout=30)  # the four threads start together
        p = P.of_image(imgs[i], keep_gray=True)
        return p, P.verify_deltas(p, cands, comparison=comparison)

    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(job, range(len(imgs))))
        for (p, d), a, ad in zip(together, alone, alone_d):
            assert np.array_equal(p.pts, a.pts) and np.array_equal(p.des, a.des)
            assert np.array_equal(d, ad)


def test_the_learned_comparison_is_the_trained_model_and_an_unknown_one_is_refused(tmp_path) -> None:
    """The shipped ONNX file is the model scripts/train_verifier.py exports (same scores as its torch
    module); remembered deltas are tagged with the comparison; a comparison this version does not know is
    refused, saying which it knows."""
    torch = pytest.importorskip("torch", reason="exporting the learned comparison needs the train extra")
    import sys
    from pathlib import Path

    import onnxruntime as ort

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import train_verifier as T

    meta = ort.InferenceSession(str(P.VERIFIER_FILE), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert meta.custom_metadata_map["name"] == P.LEARNED and int(meta.custom_metadata_map["grid"]) == P.GRID
    torch.manual_seed(0)
    model = T.Verifier(tuple(int(x) for x in meta.custom_metadata_map["widths"].split(",")))
    ckpt = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "widths": (8, 16, 32, 32), "epoch": 0, "metrics": {}}, ckpt)
    T.export_onnx(ckpt, tmp_path / "v.onnx")
    sess = ort.InferenceSession(str(tmp_path / "v.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for k in (2, 5):
        qg, cg = rng.normal(size=(1, P.GRID, P.GRID)).astype(np.float32), rng.normal(size=(1, k, P.GRID, P.GRID))
        seen, valid = np.ones((1, P.GRID, P.GRID), np.float32), np.ones((1, k), bool)
        got = sess.run(None, {"qg": qg, "cg": cg.astype(np.float32), "seen": seen, "valid": valid})[0]
        want = model.eval()(*(torch.from_numpy(x) for x in (qg, cg.astype(np.float32), seen, valid))).detach().numpy()
        assert np.allclose(got, want, atol=1e-4)
    assert P.memo_tag(P.RULE) != P.memo_tag(P.LEARNED)
    assert P.comparison_of({}) == P.RULE and P.comparison_of({"comparison": P.LEARNED}) == P.LEARNED
    q = P.of_image(_warp(_page(3), 1), keep_gray=True)
    with pytest.raises(ValueError, match="unknown to this docretriever"):
        P.verify_deltas(q, [P.of_image(_page(3))] * 2, comparison="verifier-from-the-future")
