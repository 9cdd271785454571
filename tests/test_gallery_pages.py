"""A gallery that verifies keeps every exemplar's page print through every write (work in progress:
the search does not use them yet)."""
from __future__ import annotations

import numpy as np

FAMILY = {f"form-{c}": 1 for c in "abcdef"}


def _register(root):
    from indexer_testdata import make_register

    return make_register(root / "register", FAMILY)


def test_page_prints_follow_every_write(tmp_path, local_encoder):
    from encoders import pageprint
    from indexer.gallery import Gallery
    from indexer.verify import verify
    from indexer_testdata import write_image

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder, verify=True)
    rec = g.manifest["pages"]
    assert g.verifies and rec["row_bytes"] == pageprint.row_bytes() and rec["weight"] == pageprint.WEIGHT
    st = g.stats()["pages_store"]
    assert st["rows"] == g.count == 6
    rows = g._s.pages.get(g.vectors()[0])
    assert rows.shape == (6, pageprint.row_bytes()) and all(len(pageprint.unpack(r).pts) > 0 for r in rows)
    extra = write_image(tmp_path / "new" / "form-g.png", "form-g")
    g.add([extra], label="form-g")
    assert g.verifies and g.stats()["pages_store"]["rows"] == g.count == 7
    g.remove(labels=["form-a"])
    g.compact()
    assert sorted(g._s.pages.ids.tolist()) == sorted(g.vectors()[0].tolist())
    before = g.generation
    g.rollback()
    g = Gallery.open(g.path, local_encoder)
    assert g.generation == before + 1 and g.verifies and g._s.pages.rows == 7
    rep = verify(g, local_encoder, sample=3)
    assert rep.ok, rep.problems


def test_imported_vectors_turn_verification_off(tmp_path, local_encoder):
    from indexer.gallery import Gallery

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder, verify=True)
    feats = g.vectors()[1][:1]
    res = g.add_vectors(feats * 1.0, ["imported-type"], sources=["elsewhere.png"], check_near_duplicates=False)
    assert not g.verifies and any("verification turned off" in n for n in res.notes)
    assert not Gallery.open(g.path, local_encoder).verifies


def test_a_gallery_without_verification_keeps_no_prints(tmp_path, local_encoder):
    from indexer.gallery import Gallery

    g = Gallery.build(_register(tmp_path), tmp_path / "g", local_encoder)
    assert not g.verifies and "pages" not in g.manifest and g.stats()["pages_store"] is None
    assert not any(p.name.startswith("pages-") for p in g.path.iterdir())
    assert np.isfinite(g.vectors()[1]).all()
