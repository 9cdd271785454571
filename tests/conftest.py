"""Shared fixtures: the shipped model, a tiny contract-honouring model, and sample images."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Galleries built by tests skip self-calibration (seconds per build) unless a test asks for it
# (self_calibrate=True / the CLI's --self-calibrate); tests/test_selfcal.py covers it end to end.
os.environ.setdefault("DOCRETRIEVER_SELF_CALIBRATE", "0")

from pathlib import Path

import cv2
import numpy as np
import pytest

cv2.setNumThreads(1)


def make_tiny_model(path: Path, dim: int = 16, size: int = 32, name: str = "tiny-test-model",
                    seed: int = 0) -> Path:
    """A small random ONNX model that honours the docretriever contract (for shape/safety tests)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from encoders.contract import ModelContract, write_contract

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3 * size * size, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["img"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["raw"]),
         helper.make_node("LpNormalization", ["raw"], ["feats"], axis=1, p=2)],
        name, [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    write_contract(str(path), ModelContract(name=name, input_size=(size, size), dim=dim, colour="BGR"))
    return path


@pytest.fixture(scope="session")
def encoder():
    """The model shipped with the package."""
    import encoders

    return encoders.load()


@pytest.fixture(scope="session")
def tiny(tiny_model_path):
    """The tiny model loaded (session-wide: loading is the slow part)."""
    import encoders

    return encoders.load(tiny_model_path)


@pytest.fixture
def runner():
    """A click runner keeping stderr apart from stdout."""
    from click.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always keeps stderr apart
        return CliRunner()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def other_tiny_model_path(tmp_path_factory) -> Path:
    """Same shape as ``tiny_model_path`` but other weights: a different encoder fingerprint."""
    return make_tiny_model(tmp_path_factory.mktemp("models2") / "tiny2.onnx", seed=1, name="tiny-other")


def _generator_fonts_installed() -> bool:
    """The synthetic-document generator draws with system fonts (Latin + CJK, Debian packages
    installed by scripts/install_system_deps.sh); inference needs none."""
    import glob

    cjk = glob.glob("/usr/share/fonts/**/*CJK*", recursive=True) + glob.glob("/usr/share/fonts/**/wqy*",
                                                                              recursive=True)
    latin = glob.glob("/usr/share/fonts/**/DejaVuSans*.ttf", recursive=True)
    return bool(cjk and latin)


def pytest_collection_modifyitems(config, items):
    if _generator_fonts_installed():
        return
    skip = pytest.mark.skip(reason="generator fonts missing: run scripts/install_system_deps.sh (Debian/Ubuntu)")
    for item in items:
        if "fonts" in item.keywords:
            item.add_marker(skip)


def without_local(src: Path, out: Path) -> Path:
    """A copy of a model with a local map output, with neither the output nor the contract's ``local``:
    the cosine-only model a gallery built by it answers with."""
    import onnx

    from encoders.contract import METADATA_KEY, ModelContract, save_model, set_contract

    from encoders.local import LOCAL_OUTPUT

    model = onnx.load(str(src))
    keep = [o for o in model.graph.output if o.name != LOCAL_OUTPUT]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    nodes = [n for n in model.graph.node if LOCAL_OUTPUT not in n.output]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    meta = {p.key: p.value for p in model.metadata_props}
    set_contract(model, ModelContract.from_json(meta[METADATA_KEY]).with_local(None))
    save_model(model, str(out))
    return out


@pytest.fixture(scope="session")
def local_encoder(encoder, tmp_path_factory):
    """The shipped model with its local map (the shipped model itself once it has one)."""
    import encoders

    if encoder.has_local:
        return encoder
    pytest.importorskip("onnx", reason="writing a model needs the onnx package (test extra)")
    from encoders.local import LITE0_BLOCKS3, add_local_output

    out = tmp_path_factory.mktemp("local-model") / "with-local.onnx"
    add_local_output(encoder.path, LITE0_BLOCKS3, out)
    return encoders.load(out)


@pytest.fixture(scope="session")
def plain_encoder(encoder, tmp_path_factory):
    """The shipped model without a local map: galleries it builds answer with the cosine alone."""
    import encoders

    if not encoder.has_local:
        return encoder
    pytest.importorskip("onnx", reason="writing a model needs the onnx package (test extra)")
    return encoders.load(without_local(encoder.path, tmp_path_factory.mktemp("plain-model") / "plain.onnx"))
