"""ONNX Runtime encoder: images in, L2-normalised features out.

One thread per session by default: on a shared or small machine, OpenMP-style intra-op threads
stall each other (measured 2-11x slowdowns on 2 busy cores); parallelism comes from processes.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .contract import ModelContract, read_contract_from_onnx_bytes
from .decode import ImageInput, read_image
from .local import cells
from .preprocess import preprocess

LOG = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parent / "default" / "docretriever-default.onnx"
BACKENDS = ("cpu", "cuda", "tensorrt")
CPU_RUN_BATCH = 4  # images per ONNX Runtime call on CPU (see Encoder.__init__)


class EncoderError(RuntimeError):
    """The model could not be loaded or run as asked (missing file, wrong backend, bad contract)."""


def shipped_models() -> dict[str, Path]:
    """The models shipped in the package by name: ``docretriever-<name>.onnx`` beside the default
    (``default``, its ``default-int8`` copy, and any other tier shipped there)."""
    return {p.stem[len("docretriever-"):]: p for p in sorted(DEFAULT_MODEL.parent.glob("docretriever-*.onnx"))}


def resolve_model(model: str | os.PathLike | None) -> Path:
    """A model argument as a file: None is the default model, a shipped name (``default-int8``) its
    file, anything else a path.  A name that is neither a file nor shipped is refused, listing the
    shipped names."""
    if model is None:
        return default_model_path()
    path = Path(model)
    text = str(model)
    if path.exists() or os.sep in text or text.endswith(".onnx"):
        return path
    shipped = shipped_models()
    if text in shipped:
        return shipped[text]
    raise EncoderError(f"model {text!r}: no such file, and no shipped model of that name "
                       f"(shipped: {', '.join(shipped) or 'none'})")


def default_model_path() -> Path:
    """The model shipped inside the package (overridable with $DOCRETRIEVER_MODEL)."""
    env = os.environ.get("DOCRETRIEVER_MODEL")
    return Path(env) if env else DEFAULT_MODEL


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _providers(backend: str, gpu_id: int, available: Sequence[str]) -> list[Any]:
    if backend == "cpu":
        return ["CPUExecutionProvider"]
    if backend == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise EncoderError(
                "backend='cuda' asked, but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}); replace the CPU build with the GPU one "
                "(pip uninstall -y onnxruntime && pip install onnxruntime-gpu), or use backend='cpu'"
            )
        return [("CUDAExecutionProvider", {"device_id": gpu_id}), "CPUExecutionProvider"]
    if backend == "tensorrt":
        if "TensorrtExecutionProvider" not in available:
            raise EncoderError(
                "backend='tensorrt' asked, but this onnxruntime has no TensorrtExecutionProvider "
                f"(available: {', '.join(available)}); replace the CPU build with onnxruntime-gpu "
                "(pip uninstall -y onnxruntime && pip install onnxruntime-gpu) and install TensorRT"
            )
        return [("TensorrtExecutionProvider", {"device_id": gpu_id}),
                ("CUDAExecutionProvider", {"device_id": gpu_id}), "CPUExecutionProvider"]
    raise EncoderError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


class Encoder:
    """A loaded model: ``encode`` turns images into ``(n, dim)`` float32 unit vectors."""

    def __init__(self, model: str | os.PathLike, backend: str = "cpu", gpu_id: int = 0,
                 threads: int | None = None, run_batch: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(model)
        if not path.is_file():
            raise EncoderError(f"model file not found: {path}")
        self.path = path
        self.backend = backend
        self.gpu_id = int(gpu_id)
        if run_batch is not None and run_batch < 1:
            raise EncoderError(f"run_batch must be >= 1, got {run_batch}")
        # Images per ONNX Runtime call.  On CPU small calls are fastest: at batch 32 the activations
        # (tens of MB at 192x192) fall out of the cache; measured on one thread, batch 4 vs 32:
        # 263 vs 204 img/s (192x192 fp32), 368 vs 276 (its int8 copy), 565 vs 498 (128x128)
        # (scripts/bench_encoder.py --per-call).  GPUs want whole batches.
        self.run_batch = run_batch or (CPU_RUN_BATCH if backend == "cpu" else None)
        self._local_shape: tuple[int, int] | None = None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        providers = _providers(backend, gpu_id, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own exception types
            raise EncoderError(f"{path}: cannot load the ONNX model ({exc})") from None
        active = self.session.get_providers()
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if active[0] != wanted:
            # onnxruntime-gpu lists CUDA as available even without a GPU or CUDA libraries and then
            # silently runs on the CPU; a user who asked for a GPU must know.
            raise EncoderError(
                f"backend={backend!r} asked, but onnxruntime could not start {wanted} "
                f"(active providers: {', '.join(active)}); check the GPU, CUDA and cuDNN installation, "
                "or use backend='cpu'"
            )
        meta = self.session.get_modelmeta()
        try:
            self.contract: ModelContract = read_contract_from_onnx_bytes(meta.custom_metadata_map, str(path))
        except ValueError as exc:
            raise EncoderError(str(exc)) from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        if self.contract.input_name not in inputs:
            raise EncoderError(f"{path}: contract names input {self.contract.input_name!r}, "
                               f"model has {sorted(inputs)}")
        self.fingerprint = file_sha256(path)
        LOG.debug("loaded %s (%s) on %s", path, self.fingerprint[:12], active[0])

    # --- facts ---------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.contract.dim

    @property
    def name(self) -> str:
        return self.contract.name

    @property
    def input_size(self) -> tuple[int, int]:
        return self.contract.input_size

    def __repr__(self) -> str:
        return f"Encoder({self.contract.name!r} v{self.contract.version}, dim={self.dim}, {self.fingerprint[:12]})"

    # --- work ----------------------------------------------------------------------------------
    def load_image(self, src: ImageInput) -> np.ndarray:
        """Decode one input at the cheapest resolution that still serves this model."""
        return read_image(src, target_hw=self.input_size)

    def preprocess(self, src: ImageInput) -> np.ndarray:
        return preprocess(self.load_image(src), self.contract)

    @property
    def has_local(self) -> bool:
        """Whether the model also gives a spatial map for re-ranking (its contract's ``local``)."""
        return self.contract.local is not None

    @property
    def local_shape(self) -> tuple[int, int]:
        """(cells, channels) of one local map, read once from a run on a blank input (the graph's
        output shape is symbolic)."""
        if self._local_shape is None:
            blank = np.zeros((1, 3, *self.input_size), dtype=np.float32)
            self._local_shape = tuple(self.encode_batch(blank, local=True)[1].shape[1:])  # type: ignore[assignment]
        return self._local_shape  # type: ignore[return-value]

    def encode_batch(self, batch: np.ndarray, local: bool = False) -> Any:
        """Preprocessed ``(n, 3, H, W)`` float32 -> ``(n, dim)`` unit vectors; with ``local``, also the
        model's local map as unit cell vectors ``(n, cells, channels)`` float16 (:func:`encoders.local.cells`)."""
        if batch.ndim != 4 or batch.shape[1:] != (3, *self.input_size):
            raise ValueError(f"expected a batch of shape (n, 3, {self.input_size[0]}, {self.input_size[1]}), "
                             f"got {batch.shape}")
        if local and self.contract.local is None:
            raise EncoderError(f"{self.path}: the model has no local map output (its contract has no 'local')")
        names = [self.contract.output_name] + ([self.contract.local.output] if local else [])
        if len(batch) == 0:
            feats = np.zeros((0, self.dim), dtype=np.float32)
            return (feats, np.zeros((0, *self.local_shape), dtype=np.float16)) if local else feats
        step = self.run_batch or len(batch)
        outs, maps = [], []
        for i in range(0, len(batch), step):
            x = np.ascontiguousarray(batch[i:i + step], dtype=np.float32)
            got = self.session.run(names, {self.contract.input_name: x})
            outs.append(got[0])
            if local:
                maps.append(cells(got[1]))
        out = np.asarray(np.concatenate(outs), dtype=np.float32).reshape(len(batch), -1)
        if out.shape[1] != self.dim:
            raise EncoderError(f"{self.path}: model returned {out.shape[1]}-d features, contract says {self.dim}")
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        feats = out / np.maximum(norms, 1e-12)
        return (feats, np.concatenate(maps)) if local else feats

    def encode(self, images: Iterable[ImageInput] | ImageInput, batch_size: int = 32) -> np.ndarray:
        """Paths, bytes or BGR uint8 arrays -> ``(n, dim)`` float32 L2-normalised features.

        A single image (one path, bytes or one HxWxC array) gives ``(1, dim)``.  Unreadable input
        raises :class:`encoders.DecodeError` naming the file.
        """
        if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)) or (
                isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype != object):
            images = [images]
        feats: list[np.ndarray] = []
        buf: list[np.ndarray] = []
        for src in images:
            buf.append(self.preprocess(src))
            if len(buf) == batch_size:
                feats.append(self.encode_batch(np.stack(buf)))
                buf = []
        if buf:
            feats.append(self.encode_batch(np.stack(buf)))
        if not feats:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(feats)


def model_for_fingerprint(fingerprint: str | None, recorded_path: str | os.PathLike | None = None) -> Path | None:
    """The model file whose SHA-256 is ``fingerprint``, among the default model, the file a gallery
    recorded when it was built, and the models shipped beside the default (its int8 copy); None if
    none is.  Lets a gallery open with its own model without ``--model``."""
    if not fingerprint:
        return None
    candidates = [default_model_path()]
    if recorded_path:
        candidates.append(Path(recorded_path))
    candidates += sorted(DEFAULT_MODEL.parent.glob("*.onnx"))
    seen = set()
    for c in candidates:
        try:
            key = c.resolve()
            if key in seen or not c.is_file():
                continue
            seen.add(key)
            if file_sha256(c) == fingerprint:
                return c
        except OSError:
            continue
    return None


def load(model: str | os.PathLike | None = None, backend: str = "cpu", gpu_id: int = 0,
         threads: int | None = None, run_batch: int | None = None) -> Encoder:
    """Load an encoder: a model file, a shipped model's name (:func:`shipped_models`: ``"default"``,
    ``"default-int8"``), or None for the default model.  ``run_batch``: images per ONNX Runtime call
    (default: CPU_RUN_BATCH on CPU, the whole batch on GPU)."""
    if backend not in BACKENDS:
        raise EncoderError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return Encoder(resolve_model(model), backend, gpu_id, threads, run_batch)
