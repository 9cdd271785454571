"""Encoders: an image in, one L2-normalised feature vector out (ONNX Runtime).

>>> import encoders
>>> enc = encoders.load()                      # the shipped default model, CPU
>>> enc8 = encoders.load("default-int8")       # a shipped model by name (encoders.shipped_models())
>>> feats = enc.encode(["scan1.jpg", "scan2.png"])   # (2, 256) float32, unit rows
"""
from .contract import LocalMap, ModelContract, ThresholdRow
from .decode import DecodeError, read_image
from .preprocess import preprocess, preprocess_batch
from .runtime import (Encoder, EncoderError, default_model_path, load, model_for_fingerprint, resolve_model,
                      shipped_models)

__all__ = [
    "DecodeError", "Encoder", "EncoderError", "LocalMap", "ModelContract", "ThresholdRow", "default_model_path", "load",
    "model_for_fingerprint", "preprocess", "preprocess_batch", "read_image", "resolve_model", "shipped_models",
]
