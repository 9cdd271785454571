"""The model contract: everything a caller needs to feed a model, stored inside the ONNX file.

A model file is self-describing: its input size, colour order, scaling, feature dimension,
name/version and measured threshold table travel in the ONNX metadata under one key
(``docretriever.contract``, a JSON object).  Training writes it at export, evaluation
updates the threshold table, and inference reads it back, so the three can never disagree.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

METADATA_KEY = "docretriever.contract"
CONTRACT_VERSION = 1


@dataclass(frozen=True)
class ThresholdRow:
    """One operating point: accepting scores >= ``threshold`` (cosine) gave a measured FPR of at most
    ``fpr`` (the target FPR of the row) and a TPR of ``tpr``."""

    fpr: float
    tpr: float
    threshold: float


@dataclass(frozen=True)
class LocalMap:
    """A second output of the model: a spatial feature map (N, C, H, W) that re-ranks the top-``k``
    exemplars of a search.  Each candidate's score moves by ``weight`` x (its mean cell cosine with
    the query, cells weighted where the candidates differ, minus the candidates' mean): look-alike
    types differ in one small element, which a whole-page feature blurs and a map still locates
    (scripts/ablate_local_rerank.py, scripts/results/local_rerank/)."""

    output: str
    k: int = 5
    weight: float = 2.4
    # The pair table of the re-ranked score (what a gallery that holds its exemplars' maps answers
    # with); the contract's own ``threshold_table`` stays the table of the cosine alone, for
    # galleries that cannot re-rank (vectors imported without maps).
    threshold_table: tuple[ThresholdRow, ...] = ()
    threshold_source: str = ""

    def __post_init__(self) -> None:
        if not self.output:
            raise ValueError("contract local.output must name a model output")
        if self.k < 2:
            raise ValueError(f"contract local.k must be >= 2 (re-ranking needs candidates), not {self.k}")
        if not self.weight >= 0:
            raise ValueError(f"contract local.weight must be >= 0, not {self.weight}")


@dataclass(frozen=True)
class ModelContract:
    """How pixels become model input, and what comes out.

    ``resize="squash"`` resizes to ``input_size`` ignoring aspect ratio (area interpolation when
    shrinking); ``colour`` is the channel order the network expects; the input tensor is
    ``(pixel * scale - mean) / std`` in NCHW float32.
    """

    name: str
    version: str = "0"
    input_name: str = "img"
    output_name: str = "feats"
    input_size: tuple[int, int] = (128, 128)  # (height, width)
    colour: str = "RGB"
    resize: str = "squash"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    dim: int = 256
    normalized: bool = True
    threshold_table: tuple[ThresholdRow, ...] = ()
    threshold_source: str = ""  # what data the table was measured on
    info: dict[str, Any] = field(default_factory=dict)  # free-form model-card facts
    local: LocalMap | None = None  # a feature map output for re-ranking (None: cosine alone)

    def __post_init__(self) -> None:
        if self.colour not in ("RGB", "BGR"):
            raise ValueError(f"contract colour must be 'RGB' or 'BGR', not {self.colour!r}")
        if self.resize != "squash":
            raise ValueError(f"contract resize mode {self.resize!r} is not supported (only 'squash')")
        if len(self.input_size) != 2 or min(self.input_size) < 8:
            raise ValueError(f"contract input_size must be (height, width) >= 8, not {self.input_size!r}")
        if self.dim < 1:
            raise ValueError(f"contract dim must be positive, not {self.dim}")

    # --- serialisation -------------------------------------------------------------------------
    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["contract_version"] = CONTRACT_VERSION
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelContract":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: metadata {METADATA_KEY!r} is not valid JSON ({exc})") from None
        version = d.pop("contract_version", CONTRACT_VERSION)
        if version > CONTRACT_VERSION:
            raise ValueError(
                f"{source}: contract version {version} is newer than this docretriever understands "
                f"({CONTRACT_VERSION}); upgrade docretriever"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"{source}: unknown contract fields {sorted(unknown)}")
        d["input_size"] = tuple(d.get("input_size", (128, 128)))
        d["mean"] = tuple(d.get("mean", (0.0, 0.0, 0.0)))
        d["std"] = tuple(d.get("std", (1.0, 1.0, 1.0)))
        d["threshold_table"] = tuple(ThresholdRow(**r) for r in d.get("threshold_table", ()))
        if d.get("local") is not None:
            try:
                loc = dict(d["local"])
                loc["threshold_table"] = tuple(ThresholdRow(**r) for r in loc.get("threshold_table", ()))
                d["local"] = LocalMap(**loc)
            except TypeError as exc:
                raise ValueError(f"{source}: bad contract field 'local' ({exc})") from None
        return cls(**d)

    def with_thresholds(self, rows: list[ThresholdRow], source: str) -> "ModelContract":
        return dataclasses.replace(self, threshold_table=tuple(rows), threshold_source=source)

    def with_info(self, **info: Any) -> "ModelContract":
        return dataclasses.replace(self, info={**self.info, **info})

    def with_local_thresholds(self, rows: list[ThresholdRow], source: str) -> "ModelContract":
        """The re-ranked score's pair table (a model with a local map only)."""
        if self.local is None:
            raise ValueError(f"model {self.name!r} has no local map: its only table is threshold_table")
        return dataclasses.replace(self, local=dataclasses.replace(self.local, threshold_table=tuple(rows),
                                                                   threshold_source=source))

    def with_local(self, local: LocalMap | None) -> "ModelContract":
        return dataclasses.replace(self, local=local)


def read_contract_from_onnx_bytes(custom_metadata: dict[str, str], source: str) -> ModelContract:
    """Parse the contract from an ONNX model's custom metadata map (as ONNX Runtime returns it)."""
    if METADATA_KEY not in custom_metadata:
        raise ValueError(
            f"{source}: not a docretriever model (no {METADATA_KEY!r} metadata); export it with "
            "scripts/export.py or write a contract with encoders.contract.write_contract"
        )
    return ModelContract.from_json(custom_metadata[METADATA_KEY], source=source)


def write_contract(onnx_path: str, contract: ModelContract, out_path: str | None = None) -> None:
    """Store ``contract`` in the ONNX file's metadata (needs the ``onnx`` package).

    Written atomically: a crash leaves either the old or the new file, never half of one.
    """
    import onnx

    model = onnx.load(onnx_path)
    set_contract(model, contract)
    save_model(model, out_path or onnx_path)


def set_contract(model: Any, contract: ModelContract) -> None:
    """Replace the contract in an in-memory ``onnx.ModelProto``'s metadata."""
    props = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = contract.to_json()


def save_model(model: Any, target: str) -> None:
    """Write an ``onnx.ModelProto`` atomically (temporary file, fsync, rename; mode 0644)."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(target)), suffix=".onnx.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
