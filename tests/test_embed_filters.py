"""`retriever embed` -> `indexer import`, label filters inside the index search, and results that
name their exemplar (issue 16)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bulk_helpers import LABELS, THRESHOLD, build_gallery, bulk, write_scans, write_tiff
from encoders.runtime import file_sha256
from indexer_testdata import make_image, make_register


@pytest.fixture()
def gallery(tiny, tmp_path):
    return build_gallery(tiny, tmp_path)


def _register(root: Path, per_label: int = 2) -> Path:
    return make_register(root, {lab: per_label for lab in ("alpha", "beta", "gamma", "delta")})


# ---------------------------------------------------------------------------------- embed
def test_embed_writes_vectors_with_provenance_and_error_rows(tiny, tmp_path):
    from retriever.bulk import run_embed

    files = write_scans(tmp_path / "in", 3)
    tif = write_tiff(tmp_path / "in" / "multi.tif", 2)
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "v.parquet"
    s = run_embed([str(tmp_path / "in")], out, encoder=tiny, progress=False, batch_size=2)
    t = pq.read_table(out)
    assert t.column_names == ["path", "page", "vector", "sha256", "error"]
    assert t.schema.field("vector").type == pa.list_(pa.float32(), tiny.dim)
    rows = t.to_pylist()
    by_path = {(Path(r["path"]).name, r["page"]): r for r in rows}
    assert by_path[("bad.png", 0)]["vector"] is None and by_path[("bad.png", 0)]["error"]
    assert by_path[("multi.tif", 0)]["error"] is None and by_path[("multi.tif", 1)]["error"] is None
    assert by_path[("multi.tif", 1)]["sha256"] == file_sha256(tif)
    got = np.array([by_path[(f.name, 0)]["vector"] for f in files], np.float32)
    np.testing.assert_allclose(got, tiny.encode(files), atol=1e-5)
    assert all(by_path[(f.name, 0)]["sha256"] == file_sha256(f) for f in files)
    md = t.schema.metadata
    assert md[b"docretriever.encoder.fingerprint"].decode() == tiny.fingerprint
    assert md[b"docretriever.encoder.dim"].decode() == str(tiny.dim)
    assert s["kind"] == "embed" and s["rows"] == 6 and s["errors"] == 1
    # the same command again: already complete, nothing redone
    again = run_embed([str(tmp_path / "in")], out, encoder=tiny, progress=False)
    assert again["status"] == "already complete" and again["rows"] == 6


def test_embed_then_import_classifies_like_a_gallery_built_from_the_images(tiny, tmp_path, runner):
    from indexer.cli import cli as indexer_cli
    from indexer.gallery import Gallery
    from retriever import Retriever
    from retriever.cli import main as retriever_cli

    reg = _register(tmp_path / "register")
    (reg / "alpha" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    vec = tmp_path / "v.parquet"
    r = runner.invoke(retriever_cli, ["embed", str(reg), "-o", str(vec), "--model", str(tiny.path), "-q"])
    assert r.exit_code == 3, r.output  # one unreadable file: an error row, the rest embedded
    r = runner.invoke(indexer_cli, ["import", str(tmp_path / "imported"), str(vec), "--label-from-path", "folder"])
    assert r.exit_code == 0, r.output
    assert "1 row(s) with an error" in r.output
    (reg / "alpha" / "broken.jpg").unlink()
    built = Gallery.build(reg, tmp_path / "built", tiny, force=True)
    imported = Gallery.open(tmp_path / "imported", encoder=tiny)
    assert imported.label_counts() == built.label_counts() == {"alpha": 2, "beta": 2, "delta": 2, "gamma": 2}
    assert sorted(imported.items.column("source").to_pylist()) == sorted(built.items.column("source").to_pylist())
    queries = [make_image(lab, 7) for lab in ("alpha", "beta", "gamma", "delta")]
    a = Retriever(built, tiny, threshold=THRESHOLD).classify(queries)
    b = Retriever(imported, tiny, threshold=THRESHOLD).classify(queries)
    assert [(x.label, x.accepted) for x in a] == [(y.label, y.accepted) for y in b]
    np.testing.assert_allclose([x.score for x in a], [y.score for y in b], atol=1e-6)
    # without labels the file is refused, saying how to give them
    r = runner.invoke(indexer_cli, ["import", str(tmp_path / "other"), str(vec)])
    assert r.exit_code != 0 and "--label-from-path" in r.output


def test_import_reads_labels_from_a_named_column(tiny, tmp_path):
    from indexer.importer import read_vectors_file
    from retriever.bulk import run_embed

    files = write_scans(tmp_path / "in", 3)
    out = tmp_path / "v.parquet"
    run_embed([str(f) for f in files], out, encoder=tiny, progress=False)
    t = pq.read_table(out)
    pq.write_table(t.append_column("doc_type", pa.array(["a", "b", "a"])), tmp_path / "l.parquet")
    vf = read_vectors_file(tmp_path / "l.parquet", label_column="doc_type")
    assert vf.labels == ["a", "b", "a"] and vf.encoder.fingerprint == tiny.fingerprint
    assert vf.sources == [str(f) for f in files]
    with pytest.raises(Exception, match="no column 'kind'"):
        read_vectors_file(tmp_path / "l.parquet", label_column="kind")


# ---------------------------------------------------------------------------------- label filters
def test_label_filter_searches_inside_the_index(tiny, tmp_path):
    """The filtered top-k is the exact top-k among the allowed labels, even when every allowed
    exemplar ranks below all others globally (a post-filter of the global top-k would find nothing)."""
    from indexer.gallery import Gallery

    g = Gallery.build(_register(tmp_path / "reg", per_label=3), tmp_path / "g", tiny, force=True)
    ids, vecs = g.vectors()
    labels = g.labels_of(ids)
    q = vecs[labels == "alpha"][:1]
    allowed = ["gamma"]
    sims = vecs @ q[0]
    scores, got = g.search(q, 2, labels=allowed)
    want = ids[labels == "gamma"][np.argsort(-sims[labels == "gamma"])][:2]
    assert got[0].tolist() == want.tolist()
    np.testing.assert_allclose(scores[0], np.sort(sims[labels == "gamma"])[::-1][:2], atol=1e-5)
    assert set(g.labels_of(got[0])) == {"gamma"}
    with pytest.raises(Exception, match="no exemplars with label"):
        g.search(q, 2, labels=["nope"])
    # removed exemplars stay out of a filtered search too
    g.remove(ids=[int(want[0])])
    _, after = g.search(q, 3, labels=allowed)
    assert int(want[0]) not in after[0].tolist() and set(g.labels_of(after[0][after[0] >= 0])) == {"gamma"}


@pytest.mark.parametrize("kind", ["gallery", "memory"])
def test_retriever_label_filter_gives_top_k_and_margin_among_allowed_labels(tiny, tmp_path, kind):
    from indexer.gallery import Gallery
    from retriever import Retriever
    from retriever.retriever import RetrieverError
    from retriever.memory import MemoryGallery

    g = Gallery.build(_register(tmp_path / "reg"), tmp_path / "g", tiny, force=True)
    if kind == "memory":
        ids, vecs = g.vectors()
        g = MemoryGallery(vecs, list(g.labels_of(ids)), tiny)
    img = make_image("alpha", 0)  # an alpha exemplar
    full = Retriever(g, tiny, threshold=THRESHOLD, top_k=4).classify_one(img)
    assert full.label == "alpha"
    only = Retriever(g, tiny, threshold=THRESHOLD, top_k=4, labels=["beta", "delta"]).classify_one(img)
    assert {lab for lab, _ in only.top_k} == {"beta", "delta"}
    scores = dict(full.top_k)
    assert only.top_k == sorted(((lab, scores[lab]) for lab in ("beta", "delta")), key=lambda kv: -kv[1])
    assert only.margin == pytest.approx(only.top_k[0][1] - only.top_k[1][1])
    per_call = Retriever(g, tiny, threshold=THRESHOLD, top_k=4).classify_one(img, labels=["beta", "delta"])
    assert per_call.top_k == only.top_k
    with pytest.raises(RetrieverError, match="no label"):
        Retriever(g, tiny, threshold=THRESHOLD, labels=["alpha", "zeta"])


def test_cli_label_filter_and_exemplar_ids_in_json(tiny, gallery, tmp_path, runner):
    from retriever.cli import main as retriever_cli

    q = write_scans(tmp_path / "q", 2, start=1000)  # the invoice exemplar's own image, and another
    args = ["classify", *map(str, q), "-g", str(gallery.path), "--threshold", str(THRESHOLD), "--json",
            "--model", str(tiny.path)]
    r = runner.invoke(retriever_cli, args)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    top = rows[0]["top_k"][0]
    assert top["label"] == "invoice" and top["source"].endswith("invoice/front.png")
    assert gallery.labels_of([top["id"]])[0] == "invoice"
    r = runner.invoke(retriever_cli, args + ["--label", "passport", "--label", "receipt"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert all({t["label"] for t in row["top_k"]} <= {"passport", "receipt"} for row in rows)
    r = runner.invoke(retriever_cli, args + ["--label", "passprt"])
    assert r.exit_code == 1 and "passprt" in r.output


def test_bulk_label_filter_is_part_of_the_run(tiny, gallery, tmp_path):
    from retriever.bulk import ResumeRefusedError

    files = write_scans(tmp_path / "in", 4)
    out = tmp_path / "r.parquet"
    bulk([tmp_path / "in"], gallery, out, tiny, labels=["receipt", "passport"])
    t = pq.read_table(out)
    assert all(set(x) <= {"receipt", "passport"} for x in t.column("top_k_labels").to_pylist())
    assert set(t.column("label").to_pylist()) <= {"receipt", "passport"}
    meta = json.loads(pq.read_schema(out).metadata[b"docretriever.bulk"])
    assert meta["labels"] == ["passport", "receipt"]
    with pytest.raises(ResumeRefusedError, match="label|labels"):
        bulk([tmp_path / "in"], gallery, out, tiny, labels=["receipt"])
    assert len(files) == t.num_rows and set(LABELS) >= set(t.column("label").to_pylist())


def test_shipped_models_are_loaded_by_name_everywhere(runner, tmp_path):
    import encoders
    from encoders import EncoderError
    from indexer.cli import cli as indexer_cli

    shipped = encoders.shipped_models()
    assert {"default", "default-int8", "fast", "fast-int8"} <= set(shipped)
    assert encoders.resolve_model("default-int8") == shipped["default-int8"]
    assert encoders.load("default-int8").fingerprint == encoders.load(shipped["default-int8"]).fingerprint
    with pytest.raises(EncoderError, match="shipped: .*default-int8"):
        encoders.resolve_model("fastest")
    reg = make_register(tmp_path / "reg", {"a": 1, "b": 1})
    r = runner.invoke(indexer_cli, ["build", str(reg), "-o", str(tmp_path / "g"), "--model", "default-int8",
                                    "--no-self-calibrate"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(indexer_cli, ["stats", str(tmp_path / "g"), "--json"])
    assert json.loads(r.output)["encoder"]["fingerprint"] == encoders.load("default-int8").fingerprint
    r = runner.invoke(indexer_cli, ["build", str(reg), "-o", str(tmp_path / "f"), "--model", "fast",
                                    "--no-self-calibrate"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(indexer_cli, ["stats", str(tmp_path / "f"), "--json"])
    assert json.loads(r.output)["encoder"]["fingerprint"] == encoders.load("fast").fingerprint
    r = runner.invoke(indexer_cli, ["build", str(reg), "-o", str(tmp_path / "h"), "--model", "nope"])
    assert r.exit_code != 0 and "no shipped model" in r.output


def test_indexer_commands_take_the_gallery_as_argument_or_with_g(tiny, tmp_path, runner):
    from indexer.cli import cli as indexer_cli

    reg = make_register(tmp_path / "reg", {"a": 1, "b": 1})
    g = str(tmp_path / "g")
    model = ["--model", str(tiny.path)]
    assert runner.invoke(indexer_cli, ["build", str(reg), "-g", g, *model, "--no-self-calibrate"]).exit_code == 0
    for args in (["list", g], ["list", "-g", g], ["stats", "--gallery", g, "--json"], ["verify", "-g", g]):
        r = runner.invoke(indexer_cli, args)
        assert r.exit_code == 0, (args, r.output)
    extra = make_register(tmp_path / "extra", {"c": 1})
    r = runner.invoke(indexer_cli, ["add", "-g", g, str(extra / "c" / "0.png"), "--label", "c", *model])
    assert r.exit_code == 0, r.output
    r = runner.invoke(indexer_cli, ["list", "-g", g, "--json"])
    assert "c" in r.output
    r = runner.invoke(indexer_cli, ["list", g, "-g", str(tmp_path / "other")])
    assert r.exit_code == 2 and "give the gallery once" in r.output
    r = runner.invoke(indexer_cli, ["list"])
    assert r.exit_code == 2 and "--gallery" in r.output
    r = runner.invoke(indexer_cli, ["add", "-g", g])
    assert r.exit_code == 2 and "PATHS" in r.output
    r = runner.invoke(indexer_cli, ["export", "-g", g, "-o", str(tmp_path / "v.parquet")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(indexer_cli, ["import", "-g", str(tmp_path / "copy"), str(tmp_path / "v.parquet")])
    assert r.exit_code == 0, r.output


def test_both_clis_read_option_defaults_from_the_environment_and_share_verbosity(tiny, gallery, tmp_path, runner):
    from retriever.cli import main

    q = write_scans(tmp_path / "q", 1)
    env = {"DOCRETRIEVER_CLASSIFY_GALLERY": str(gallery.path), "DOCRETRIEVER_CLASSIFY_MODEL": str(tiny.path),
           "DOCRETRIEVER_CLASSIFY_THRESHOLD": str(THRESHOLD)}
    r = runner.invoke(main, ["classify", str(q[0]), "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[0])["threshold"] == pytest.approx(THRESHOLD)
    loud = runner.invoke(main, ["-v", "classify", str(q[0])], env=env)
    quiet = runner.invoke(main, ["-q", "classify", str(q[0])], env=env)
    assert "explicit threshold" in loud.stderr and "explicit threshold" not in quiet.stderr
    assert loud.exit_code == quiet.exit_code == 0


def test_the_retrievers_errors_share_one_base_and_keep_their_builtin_bases():
    from retriever import RetrieverBaseError, RetrieverError
    from retriever import errors as E
    from retriever.bulk import BulkError, ResumeRefusedError
    from retriever.thresholds import NoThresholdTableError, ThresholdError

    for cls, builtin in ((RetrieverError, RuntimeError), (ThresholdError, ValueError), (NoThresholdTableError, ValueError),
                         (E.CalibrationError, ValueError), (BulkError, RuntimeError), (ResumeRefusedError, RuntimeError),
                         (E.OutputError, ValueError)):
        assert issubclass(cls, RetrieverBaseError) and issubclass(cls, builtin), cls
    from encoders import EncoderError
    from encoders.inputs import InputError
    from indexer.errors import GalleryError

    # input specs are read by one reader shared with the indexer: its error lives in that layer
    assert E.InputError is InputError and issubclass(InputError, ValueError)
    assert set(E.setup_errors()) == {RetrieverBaseError, EncoderError, InputError, GalleryError}


def test_thresholds_and_verify_print_json(tiny, gallery, runner):
    from indexer.cli import cli as indexer_cli
    from retriever.cli import main

    r = runner.invoke(main, ["thresholds", "-g", str(gallery.path), "--json", "--model", str(tiny.path)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["model"]["fingerprint"] == tiny.fingerprint and "open_set" in d and "in_use" in d
    r = runner.invoke(indexer_cli, ["verify", "-g", str(gallery.path), "--json", "--sample", "0"])
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)
    assert v["ok"] is True and v["problems"] == [] and v["generation"] == gallery.generation


def test_progress_off_a_terminal_is_a_line_every_few_seconds(monkeypatch):
    import io

    from indexer import cli_shared

    out = io.StringIO()
    monkeypatch.setattr(cli_shared, "LOG_EVERY_S", 0.0)
    with cli_shared.Progress(10, "encoding", stream=out) as p:
        for _ in range(3):
            p.update(2)
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("encoding: 6/10 img") and len(lines) == 3
    quiet = io.StringIO()
    monkeypatch.setattr(cli_shared, "LOG_EVERY_S", 3600.0)
    with cli_shared.Progress(10, "encoding", stream=quiet) as p:
        p.update(5)
    assert quiet.getvalue() == ""


def test_search_parameters_reach_the_search_from_every_command(tiny, tmp_path, runner, monkeypatch):
    from indexer import index as idx
    from indexer.gallery import Gallery
    from retriever.cli import main

    g = Gallery.build(_register(tmp_path / "reg"), tmp_path / "g", tiny, index_spec="hnsw", force=True)
    seen: list = []
    real = idx.search

    def spy(index, feats, k, plan=None, params=None, *a, **kw):
        seen.append(dict(params or {}))
        return real(index, feats, k, plan, params, *a, **kw)

    monkeypatch.setattr(idx, "search", spy)
    q = str(tmp_path / "reg" / "alpha" / "0.png")
    base = ["-g", str(g.path), "--threshold", str(THRESHOLD), "--model", str(tiny.path), "--search-param", "efSearch=7"]
    r = runner.invoke(main, ["classify", q, *base])
    assert r.exit_code == 0, r.output
    assert seen and all(p.get("efSearch") == 7 for p in seen)
    seen.clear()
    r = runner.invoke(main, ["run", q, *base, "-o", str(tmp_path / "r.parquet"), "-q"])
    assert r.exit_code == 0, r.output
    assert seen and all(p.get("efSearch") == 7 for p in seen)
    r = runner.invoke(main, ["classify", q, *base[:-1], "nprobe=zero"])
    assert r.exit_code == 2 and "nprobe" in r.output


def test_a_run_configuration_rebuilds_the_drivers_retriever_exactly(tiny, tmp_path):
    """What a Ray actor receives: the same operating point, search parameters, filter and answers."""
    import json as _json

    from indexer.gallery import Gallery
    from retriever import Retriever
    from retriever.run_config import RunConfig

    g = Gallery.build(_register(tmp_path / "reg"), tmp_path / "g", tiny, index_spec="hnsw", force=True)
    r = Retriever(g.path, tiny, threshold=THRESHOLD, top_k=2, search_params={"efSearch": 9},
                  labels=["alpha", "beta", "gamma"])
    cfg = RunConfig.of(r, with_features=True)
    again = RunConfig.from_dict(_json.loads(_json.dumps(cfg.to_dict())))  # through JSON, as Ray pickles it
    assert again == cfg
    r2 = again.retriever()
    assert (r2.threshold, r2.rule.name, r2.top_k, r2.search_params, r2.labels) == \
        (r.threshold, r.rule.name, r.top_k, r.search_params, r.labels)
    imgs = [make_image(lab, 5) for lab in ("alpha", "delta")]
    assert [x.to_dict() for x in r2.classify(imgs)] == [x.to_dict() for x in r.classify(imgs)]
    ident = cfg.identity(["scans/"])
    assert ident["search_params"] == {"efSearch": 9} and ident["labels"] == ["alpha", "beta", "gamma"]
    assert ident["threshold"] == round(THRESHOLD, 7) and ident["with_features"] is True
    import cv2

    cv2.imwrite(str(tmp_path / "new.png"), make_image("epsilon", 0))
    g.add([str(tmp_path / "new.png")], label="epsilon", force=True)
    with pytest.raises(Exception, match="generation"):
        again.retriever()


def test_indexer_commands_that_encode_take_backend_and_gpu_id(tiny, tmp_path, runner):
    import onnxruntime

    from indexer.cli import cli as indexer_cli

    reg = make_register(tmp_path / "reg", {"a": 1, "b": 1})
    args = ["build", str(reg), "-o", str(tmp_path / "g"), "--model", str(tiny.path), "--no-self-calibrate"]
    assert runner.invoke(indexer_cli, [*args, "--backend", "cpu", "--gpu-id", "0"]).exit_code == 0
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        r = runner.invoke(indexer_cli, [*args[:2], "-o", str(tmp_path / "h"), *args[4:], "--backend", "cuda"])
        assert r.exit_code == 1 and "CUDAExecutionProvider" in r.output and "onnxruntime-gpu" in r.output
    for cmd in ("add", "calibrate", "verify"):
        r = runner.invoke(indexer_cli, [cmd, "--help"])
        assert "--backend" in r.output and "--gpu-id" in r.output, cmd
