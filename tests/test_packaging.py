"""The package installs anywhere: the GPU build of ONNX Runtime where PyPI has wheels for it, the CPU
build elsewhere, never both and never neither (checked on the project's own metadata)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent

PLATFORMS = {  # (platform_system, platform_machine) -> the runtime that must be installed
    ("Linux", "x86_64"): "onnxruntime-gpu",
    ("Windows", "AMD64"): "onnxruntime-gpu",
    ("Darwin", "arm64"): "onnxruntime",
    ("Darwin", "x86_64"): "onnxruntime",
    ("Linux", "aarch64"): "onnxruntime",
}


def _requirements() -> list[Requirement]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [Requirement(d) for d in deps]


@pytest.mark.parametrize("system, machine", sorted(PLATFORMS))
def test_exactly_one_onnx_runtime_per_platform(system, machine):
    env = {"platform_system": system, "platform_machine": machine, "python_version": "3.11", "sys_platform": "x"}
    chosen = [r.name for r in _requirements() if r.name.startswith("onnxruntime")
              and (r.marker is None or r.marker.evaluate(env))]
    assert chosen == [PLATFORMS[(system, machine)]]


def test_installed_metadata_carries_the_markers():
    from importlib.metadata import requires

    reqs = [Requirement(r) for r in requires("docretriever") or []]
    runtimes = {r.name: r for r in reqs if r.name.startswith("onnxruntime")}
    assert set(runtimes) == {"onnxruntime", "onnxruntime-gpu"}
    assert all(r.marker is not None for r in runtimes.values())
