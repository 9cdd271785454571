"""Fuzz suite: a seeded corpus of broken, hostile and special inputs (scripts/attack.py, made at test
time) through `retriever classify`, `retriever run` (and its resume) and `indexer add`, each in a
subprocess with a timeout.  Every input gets a result or an error row, nothing crashes or hangs, the
exemplars' copies keep their labels, nothing outside the target is written, memory stays bounded."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import attack  # noqa: E402

PEAK_MB = 1500


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_attack_corpus_finds_nothing(tmp_path, tiny_model_path, seed):
    from synth_docs import type_image, write

    reg = tmp_path / "reg"
    for t in range(4):
        write(reg / f"type{t}" / "specimen.png", type_image(t, size=96))
    outcomes = attack.attack(tmp_path / "work", seed, 120, str(tiny_model_path), gallery_register=reg, timeout=120)
    report = "\n".join(o.row() for o in outcomes)
    for o in outcomes:
        assert not o.crashes, f"{o.command}: {o.crashes[:3]}\n{report}"
        assert o.hangs == 0, f"{o.command} hung\n{report}"
        assert not o.lost, f"{o.command}: inputs without a result or error: {o.lost[:5]}\n{report}"
        assert not o.wrong, f"{o.command}: {o.wrong[:5]}\n{report}"
        assert not o.outside, f"{o.command}: {o.outside[:5]}\n{report}"
        assert o.peak_mb < PEAK_MB, report
    assert outcomes[0].cases >= 120 + 4 + 7  # generated files, exemplar copies, special entries
