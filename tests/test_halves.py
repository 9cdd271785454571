"""The "precise" model (encoders/training/halves.py): the full page and its two halves in one ONNX model,
whose cosine is the mean of the three views' cosines."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("onnx", reason="composing a model needs the onnx package (train/test extras)")

import encoders  # noqa: E402
from encoders.training.halves import compose_halves  # noqa: E402


def test_the_composed_models_cosine_is_the_mean_of_the_three_views(tmp_path, tiny_model_path):
    out = compose_halves(tiny_model_path, tmp_path / "precise.onnx")
    base, precise = encoders.load(tiny_model_path), encoders.load(out)
    h, w = base.contract.input_size
    assert precise.contract.input_size == (2 * h, w) and precise.dim == 3 * base.dim
    assert precise.contract.threshold_table == () and precise.fingerprint != base.fingerprint
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (90 + 7 * i, 50 + 3 * i, 3), dtype=np.uint8) for i in range(4)]
    p = precise.encode(imgs)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)

    def views(img: np.ndarray) -> list[np.ndarray]:
        big = cv2.resize(img, (w, 2 * h), interpolation=cv2.INTER_AREA)  # what the model is fed
        return [cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA), big[:h], big[h:]]

    b = [base.encode(views(i)) for i in imgs]
    for i in range(len(imgs)):
        for j in range(len(imgs)):
            want = np.mean([b[i][k] @ b[j][k] for k in range(3)])
            assert float(p[i] @ p[j]) == pytest.approx(float(want), abs=2e-3)


def test_the_precise_model_ships_by_name():
    shipped = encoders.shipped_models()
    assert "precise" in shipped
    enc = encoders.load("precise")
    default = encoders.load("default")
    assert enc.dim == 3 * default.dim and enc.contract.input_size == (2 * default.contract.input_size[0],
                                                                       default.contract.input_size[1])
    assert enc.contract.threshold_table, "the shipped precise model carries its measured threshold table"
