"""Sibling sets (encoders.training.synth.siblings): look-alike types for the benchmark and for training."""
from __future__ import annotations

import numpy as np
import pytest

from encoders.training.data import Source, render_source, source_group, synth_sources
from encoders.training.synth import render_document
from encoders.training.synth.siblings import EDIT_KINDS, MAX_MEMBERS, render_sibling, sibling, sibling_set

pytestmark = pytest.mark.fonts


def _changed(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b).max(axis=2) > 40))


def test_a_set_is_deterministic_and_its_prefix_does_not_depend_on_its_size() -> None:
    six = sibling_set("payslip", 7, 6)
    assert [s.member for s in six] == list(range(6)) and six[0].kind is None
    assert sibling_set("payslip", 7, 3) == six[:3]
    assert sibling("payslip", 7, 4) == six[4]
    assert all(s.kind in EDIT_KINDS for s in six[1:])
    assert len(sibling_set("payslip", 7, MAX_MEMBERS)) == MAX_MEMBERS
    with pytest.raises(ValueError, match="members"):
        sibling_set("payslip", 7, MAX_MEMBERS + 1)


@pytest.mark.parametrize("family", ["student_card", "utility_bill", "gift_voucher"])
def test_every_member_is_visibly_another_type_whatever_the_fill_and_scale(family: str) -> None:
    sibs = sibling_set(family, 3, 6)
    for scale in (0.3, 0.6):
        base = render_sibling(sibs[0], fill_seed=2, scale=scale)
        assert np.array_equal(base, render_sibling(sibs[0], fill_seed=2, scale=scale))  # deterministic
        for s in sibs[1:]:
            out = render_sibling(s, fill_seed=2, scale=scale)
            assert out.shape == base.shape and out.dtype == np.uint8
            assert _changed(out, base) > 0.0005, (s.kind, scale)
    # fills change only the personal data: two fills of one member differ less than two members
    # do at the place of the edit, but do differ
    a, b = render_sibling(sibs[1], 1, 0.4), render_sibling(sibs[1], 2, 0.4)
    assert 0 < _changed(a, b)


def test_count_siblings_differ_only_in_the_number_of_marks() -> None:
    for ts in range(40):
        sibs = sibling_set("student_card", ts, 8)
        counts = [s for s in sibs if s.kind == "count"]
        if counts:
            break
    else:
        pytest.fail("no set with a motif in 40 templates (P_MOTIF is 0.5)")
    base = sibs[0]
    assert base.motif is not None
    assert len({s.motif.count for s in counts} | {base.motif.count}) == len(counts) + 1
    assert all(s.motif.x0 == base.motif.x0 and s.motif.shape == base.motif.shape for s in counts)


def test_training_sources_make_each_sibling_a_class_of_the_family() -> None:
    plain = synth_sources(["invoice"], 2)
    sets = synth_sources(["invoice"], 2, siblings=3)
    assert [s.member for s in plain] == [-1, -1] and [s.member for s in sets] == [0, 1, 2, 0, 1, 2]
    assert len({s.key for s in sets}) == 6
    assert {source_group(s.key) for s in sets} == {"synth:invoice"}  # siblings share the family group
    assert plain[0].key == f"synth:invoice:{plain[0].template_seed}"  # caches built before siblings still match
    m0 = render_source(sets[0], fill=1, scale=0.3)
    tmpl = render_source(Source("synth", family="invoice", template_seed=sets[0].template_seed), fill=1, scale=0.3)
    doc = render_document("invoice", sets[0].template_seed, 1, 0.3)
    assert np.array_equal(tmpl, doc)
    assert m0.shape == doc.shape
    assert _changed(render_source(sets[1], fill=1, scale=0.3), m0) > 0.0005
