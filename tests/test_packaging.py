"""The package installs anywhere and names exactly one ONNX Runtime: the CPU build, which has wheels on
every platform.  onnxruntime and onnxruntime-gpu share one module and break each other when both are
installed, so the GPU build is a documented swap, never a second dependency (checked on pyproject and on
the installed metadata, extras included)."""
from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_one_cpu_runtime_and_no_gpu_build_anywhere_in_the_requirements():
    proj = _pyproject()
    every = [Requirement(d) for d in proj["dependencies"]]
    every += [Requirement(d) for deps in proj.get("optional-dependencies", {}).values() for d in deps]
    names = [r.name for r in every if r.name.startswith("onnxruntime")]
    assert names == ["onnxruntime"]
    (ort,) = [r for r in every if r.name == "onnxruntime"]
    assert ort.marker is None  # every platform gets it


def test_installed_metadata_names_only_onnxruntime():
    from importlib.metadata import requires

    reqs = [Requirement(r) for r in requires("docretriever") or []]
    assert sorted({r.name for r in reqs if r.name.startswith("onnxruntime")}) == ["onnxruntime"]
