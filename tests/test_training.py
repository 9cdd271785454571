"""Training code path, end to end on a tiny problem: x24 classes, PartialFC, cache, train, export, parity."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from encoders.training.data import VARIANTS, Source, apply_variant  # noqa: E402
from encoders.training.losses import MarginLoss  # noqa: E402
from encoders.training.partial_fc import PartialFC  # noqa: E402


def test_lite0_weights_map_every_tensor():
    import timm

    from encoders.training.pretrained import convert_lite0_state_dict, lite0_key_map, lite0_weights_path

    src = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    out = convert_lite0_state_dict(src, target)
    assert set(out) == set(target)
    assert len(lite0_key_map()) == len(src) == len(target)
    for k, v in out.items():
        assert tuple(v.shape) == tuple(target[k].shape), k


def test_x24_variants_are_all_distinct():
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    outs = [apply_variant(img, v) for v in range(VARIANTS)]
    keys = {o.tobytes() + bytes(o.shape) for o in outs}
    assert len(keys) == VARIANTS
    assert outs[0].shape == (40, 60, 3) and outs[1].shape == (60, 40, 3) and outs[8].shape == (20, 60, 3)
    with pytest.raises(ValueError):
        apply_variant(img, 24)


def test_partial_fc_keeps_batch_classes_and_samples_the_rest():
    pfc = PartialFC(MarginLoss("cosface"), dim=8, num_classes=100, sample_rate=0.2, seed=0)
    labels = torch.tensor([3, 97, 3, 50])
    pfc.generator.manual_seed(123)
    index, remapped = pfc.sample(labels)
    assert len(index) == 20 and torch.all(index[1:] > index[:-1])
    assert torch.equal(index[remapped], labels)
    pfc.generator.manual_seed(123)  # the same draw again inside forward
    loss = pfc(torch.randn(4, 8, requires_grad=True), labels)
    loss.backward()
    grad = pfc.centres.weight.grad.coalesce()
    assert set(grad.indices()[0].tolist()) <= set(index.tolist())


def test_partial_fc_draws_a_share_of_negatives_from_the_batch_siblings():
    groups = torch.arange(1000) % 10  # 10 groups of 100 classes
    labels = torch.tensor([0, 10, 1])  # groups 0 and 1: 198 sibling classes besides the batch's own
    for fraction, want in ((1.0, 97), (0.5, 48)):
        pfc = PartialFC(MarginLoss("cosface"), dim=8, num_classes=1000, sample_rate=0.1, seed=0, groups=groups,
                        sibling_fraction=fraction)
        index, remapped = pfc.sample(labels)
        assert len(index) == 100 and torch.equal(index[remapped], labels)
        negatives = index[~torch.isin(index, labels)]
        siblings = int(torch.isin(groups[negatives], torch.tensor([0, 1])).sum())
        # the share, plus the uniform draw's own siblings (2 of 10 groups) among the rest
        assert want <= siblings <= want + (97 - want) * 0.2 + 8
    uniform = PartialFC(MarginLoss("cosface"), dim=8, num_classes=1000, sample_rate=0.1, seed=0)
    negatives = uniform.sample(labels)[0]
    assert int(torch.isin(groups[negatives], torch.tensor([0, 1])).sum()) < 40
    with pytest.raises(ValueError, match="needs groups"):
        PartialFC(MarginLoss("cosface"), dim=8, num_classes=1000, sibling_fraction=0.5)
    with pytest.raises(ValueError, match="entries"):
        PartialFC(MarginLoss("cosface"), dim=8, num_classes=1000, groups=groups[:10], sibling_fraction=0.5)


def test_class_groups_follow_the_cache_layout():
    from encoders.training.data import class_groups, source_group

    keys = ["synth:payslip:11", "image:/usr/share/backgrounds/a.jpg:0.000,0.000,1.000,1.000", "synth:payslip:12",
            "image:/usr/share/backgrounds/a.jpg:0.100,0.200,0.500,0.600", "synth:letter:11"]
    assert source_group(keys[0]) == "synth:payslip" and source_group(keys[3]) == "image:/usr/share/backgrounds/a.jpg"
    g = class_groups(keys)
    assert g.shape == (len(keys) * VARIANTS,)
    cls = lambda source, variant: source * VARIANTS + variant  # noqa: E731  (build_shard's labels)
    assert g[cls(0, 5)] == g[cls(2, 5)]  # two templates of one family, same variant: siblings
    assert g[cls(1, 0)] == g[cls(3, 0)]  # two crops of one image
    assert g[cls(0, 5)] != g[cls(0, 6)]  # other variant
    assert g[cls(0, 5)] != g[cls(4, 5)]  # other family
    assert len(np.unique(g)) == 3 * VARIANTS
    present = np.array([cls(0, 5), cls(4, 5)])  # a partial cache: the others are nobody's siblings
    g = class_groups(keys, labels=present)
    assert g[cls(0, 5)] >= 0 and g[cls(4, 5)] >= 0 and g[cls(2, 5)] < 0
    assert len(np.unique(g)) == len(g)  # every absent class alone in its group (the two present differ)
    with pytest.raises(ValueError):
        source_group("payslip-007")


@pytest.mark.parametrize("kind", ["softmax", "cosface", "arcface"])
def test_margin_lowers_target_logit(kind):
    cos = torch.tensor([[0.5, 0.1], [0.2, 0.3]])
    out = MarginLoss(kind, s=10, m=0.3)(cos, torch.tensor([0, 1]))
    if kind == "softmax":
        assert torch.allclose(out, cos * 10)
    else:
        assert out[0, 0] < 5.0 and out[1, 1] < 3.0 and out[0, 1] == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.fonts
def test_tiny_training_run_exports_a_working_model(tmp_path):
    import encoders
    from encoders.training.cache import build_cache, load_cache
    from encoders.training.export import check_parity, contract_for, export_onnx
    from encoders.training.model import EmbeddingModel
    from encoders.training.synth import TRAIN_FAMILIES
    from encoders.training.trainer import TrainConfig, train_on_cache

    torch.set_num_threads(1)
    model = EmbeddingModel("efficientnet_lite0", train_from="conv_head").eval()
    contract = contract_for(model)
    fams = sorted(TRAIN_FAMILIES)[:2]
    sources = [Source("synth", family=f, template_seed=i) for i, f in enumerate(fams)]
    build_cache(model, contract, sources, tmp_path / "cache", views=2, render_scale=0.25, shard_sources=2)
    feats, labels, views, meta = load_cache(tmp_path / "cache")
    assert feats.shape[0] == len(sources) * VARIANTS * 2 and meta["num_classes"] == 48
    assert set(views.tolist()) == {0, 1}
    from encoders.training.data import class_groups

    cfg = TrainConfig(epochs=2, batch_size=32, sample_rate=0.5, sibling_fraction=0.5)
    groups = class_groups(meta["sources"])
    best = train_on_cache(model, feats, labels, meta["num_classes"], cfg, tmp_path / "run", log=lambda s: None,
                          groups=groups)
    hist = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist) and best
    # resume: a finished run continues without redoing epochs
    train_on_cache(model, feats, labels, meta["num_classes"], cfg, tmp_path / "run", log=lambda s: None,
                   groups=groups)
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    out = export_onnx(model.eval(), contract, tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((3, 3, 128, 128)).astype(np.float32)
    assert check_parity(model, out, x) < 1e-4
    enc = encoders.load(out)
    f = enc.encode([np.full((200, 300, 3), 200, np.uint8)])
    assert f.shape == (1, 256) and abs(float(np.linalg.norm(f)) - 1) < 1e-5


@pytest.mark.fonts
def test_cache_mixes_capture_presets_and_refuses_a_different_recipe(tmp_path):
    """A cache records its capture presets and whether it holds pixels; resuming it with another
    recipe would silently mix two training distributions, so it is refused."""
    from encoders.training.cache import build_cache, load_cache, make_view
    from encoders.training.export import contract_for
    from encoders.training.model import EmbeddingModel
    from encoders.training.synth import TRAIN_FAMILIES

    torch.set_num_threads(1)
    model = EmbeddingModel("efficientnet_lite0", train_from="blocks.6").eval()
    contract = contract_for(model)
    base = np.full((200, 300, 3), 230, np.uint8)
    base[40:80, 30:270] = 20
    mixed = [make_view(base, "k", 0, v, contract, ("train", "train_wide")) for v in (1, 2, 3)]
    again = [make_view(base, "k", 0, v, contract, ("train", "train_wide")) for v in (1, 2, 3)]
    assert all(np.array_equal(a, b) and a.shape == (128, 128, 3) for a, b in zip(mixed, again))
    src = [Source("synth", family=sorted(TRAIN_FAMILIES)[0], template_seed=1)]
    cache = tmp_path / "cache"
    build_cache(model, contract, src, cache, views=2, render_scale=0.25, shard_sources=1,
                captures=("train", "train_wide"), store_pixels=False)
    feats, labels, _, meta = load_cache(cache)
    assert feats.shape == (VARIANTS * 2, 192, 4, 4) and meta["captures"] == ["train", "train_wide"]
    assert "pixels" not in np.load(next(cache.glob("shard-*.npz"))).files
    with pytest.raises(ValueError, match="other sources/views/captures"):
        build_cache(model, contract, src, cache, views=2, render_scale=0.25, shard_sources=1, captures="train",
                    store_pixels=False)


def test_student_distillation_on_pixels(tmp_path):
    """LCNet end to end on cached view pixels, pulled towards (here random) teacher features."""
    from encoders.training.export import contract_for
    from encoders.training.model import EmbeddingModel
    from encoders.training.trainer import TrainConfig, train_on_pixels

    torch.set_num_threads(1)
    model = EmbeddingModel("lcnet_050", pretrained=False, dim=32)
    contract = contract_for(model)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (64, 128, 128, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(16), 4)
    teacher = rng.standard_normal((64, 48)).astype(np.float16)
    cfg = TrainConfig(epochs=2, batch_size=16, sample_rate=1.0, distill_weight=4.0)
    train_on_pixels(model, pixels, labels, 16, cfg, tmp_path, contract, teacher=teacher, log=lambda s: None)
    hist = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(0.0 <= h["distill_loss"] <= 2.0 for h in hist)
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["distill"] is not None  # the projector 32 -> 48 is checkpointed for resume


def _fake_cache(root, sources, views=2, fmap=(4, 2, 2), input_size=(128, 128)):
    """A cache on disk as build_cache writes it, without rendering: one shard, random maps."""
    root.mkdir(parents=True)
    n_classes = len(sources) * VARIANTS
    labels = np.repeat(np.arange(n_classes), views)
    contract = {"input_size": list(input_size), "colour": "RGB", "resize": "squash", "scale": 1 / 255,
                "mean": [0.5] * 3, "std": [0.5] * 3, "name": root.name}
    (root / "cache.json").write_text(json.dumps({"n_sources": len(sources), "num_classes": n_classes, "views": views,
                                                 "contract": contract, "sources": sources}))
    np.savez(root / "shard-00000.npz", feats=np.random.default_rng(0).standard_normal(
        (len(labels), *fmap)).astype(np.float16), labels=labels, views=np.tile(np.arange(views), n_classes))


def test_caches_add_up_with_disjoint_class_ids(tmp_path):
    from encoders.training.cache import load_caches

    _fake_cache(tmp_path / "a", ["synth:x:1", "synth:x:2"])
    _fake_cache(tmp_path / "b", ["synth:x:3"])
    feats, labels, views, meta = load_caches([tmp_path / "a", tmp_path / "b"])
    assert len(feats) == len(labels) == len(views) == 3 * VARIANTS * 2
    assert meta["num_classes"] == 72 and meta["n_sources"] == 3
    # the second cache's classes follow the first's: every class id once, none shared
    assert np.array_equal(np.unique(labels), np.arange(72))
    assert set(labels[: 2 * VARIANTS * 2].tolist()) == set(range(48))


def test_caches_that_do_not_belong_together_are_refused(tmp_path):
    from encoders.training.cache import load_caches

    _fake_cache(tmp_path / "a", ["synth:x:1"])
    _fake_cache(tmp_path / "same_source", ["synth:x:1"])
    _fake_cache(tmp_path / "other_size", ["synth:x:2"], input_size=(160, 160))
    _fake_cache(tmp_path / "other_trunk", ["synth:x:3"], fmap=(8, 2, 2))
    with pytest.raises(ValueError, match="both hold source synth:x:1"):
        load_caches([tmp_path / "a", tmp_path / "same_source"])
    with pytest.raises(ValueError, match="'input_size'"):
        load_caches([tmp_path / "a", tmp_path / "other_size"])
    with pytest.raises(ValueError, match="another trunk"):
        load_caches([tmp_path / "a", tmp_path / "other_trunk"])


def test_template_offset_draws_new_templates():
    from encoders.training.data import synth_sources

    first = synth_sources(["a", "b"], 5)
    more = synth_sources(["a", "b"], 5, template_offset=5)
    both = synth_sources(["a", "b"], 10)
    assert not {s.key for s in first} & {s.key for s in more}
    assert {s.key for s in first} | {s.key for s in more} == {s.key for s in both}


def test_teacher_top_on_cached_trunk_maps_matches_the_whole_model(tmp_path):
    """Distilling at another resolution: the teacher's exported top, run over its own cached trunk
    maps, gives the features its whole network gives; and the views of two caches are matched shard
    for shard, refused when they are not the same captures."""
    from encoders.training.distill import OnnxTopTeacher, top_features_of_caches
    from encoders.training.export import contract_for, export_onnx
    from encoders.training.model import EmbeddingModel

    torch.set_num_threads(1)
    model = EmbeddingModel("efficientnet_lite0", pretrained=False, train_from="blocks.6", input_size=(64, 64)).eval()
    onnx_path = export_onnx(model, contract_for(model), tmp_path / "teacher.onnx")
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        maps = model.backbone.trunk(x).numpy()
        whole = torch.nn.functional.normalize(model(x), dim=1).numpy()
    top = OnnxTopTeacher(onnx_path)
    assert np.abs(top(maps).astype(np.float32) - whole).max() < 2e-3  # float16 rows

    sources = ["synth:x:1"]
    _fake_cache(tmp_path / "student", sources, fmap=(4, 2, 2), input_size=(32, 32))
    _fake_cache(tmp_path / "teacher", sources, fmap=maps.shape[1:], input_size=(64, 64))
    feats = top_features_of_caches(onnx_path, [tmp_path / "student"], [tmp_path / "teacher"], tmp_path / "out",
                                   log=lambda s: None)
    with np.load(tmp_path / "teacher" / "shard-00000.npz") as z:
        expected = top(z["feats"])
    assert feats.shape == (VARIANTS * 2, 256) and np.array_equal(feats, expected)
    assert (tmp_path / "out" / "teacher" / "shard-00000.npy").exists()  # kept: a rerun resumes from it

    _fake_cache(tmp_path / "other", ["synth:x:2"], fmap=maps.shape[1:], input_size=(64, 64))
    with pytest.raises(ValueError, match="differ in 'sources'"):
        top_features_of_caches(onnx_path, [tmp_path / "student"], [tmp_path / "other"], tmp_path / "out2")
