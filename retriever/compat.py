"""``DocClassifier``: the reference project's call shape on top of :class:`retriever.Retriever`.

Code written for the reference project keeps working::

    clf = DocClassifier(register_root="my_register")   # one image per document type
    label, score = clf(img)                             # (None, score) when rejected

Differences worth knowing, all deliberate:

* Scores and ``threshold`` are on the reference's ``(cos + 1) / 2`` scale in [0, 1], as before;
  the rest of docretriever speaks cosine in [-1, 1] (``cos = 2 * score - 1``).
* The default operating point is FPIR = 1e-2 of the register's own open-set table: the register
  self-calibrates at start-up (simulated captures of each image, leave one type out; a few
  seconds for a dozen types), and decides on cosine + margin to the runner-up label.
  ``fpir=`` picks another point; ``threshold=`` (reference scale) decides on the cosine alone,
  as the reference did.
* Accept means ``score >= threshold`` (the reference used ``>``), and a rejected call returns
  the best score instead of 0.0, so callers can see how close it was.
* ``model_cfg`` is a path to a docretriever ONNX model (None: the shipped default), not a name.
* Register images may be any format the indexer reads (.jpg .jpeg .png .bmp .tif .tiff .webp),
  not only .jpg/.jpeg/.png; two files giving the same label are an error, not a silent overwrite.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .memory import MemoryGallery
from .retriever import Retriever, RetrieverError
from .thresholds import from_reference_score, to_reference_score

if TYPE_CHECKING:
    from encoders.decode import ImageInput

__all__ = ["DocClassifier", "reference_labels"]


def reference_labels(root: str | os.PathLike) -> dict[str, Path]:
    """Register images under ``root`` keyed by the reference's label convention.

    The label is the folder parts joined with ``_`` plus the file stem (``ids/tw/front.jpg`` ->
    ``ids_tw_front``; ``passport.png`` -> ``passport``); one image per label.  This is the
    indexer's ``file`` label mode (one convention project-wide): two files mapping to one label
    raise :class:`indexer.errors.LabelError` naming both (the reference silently kept the last).
    """
    from indexer.labels import scan_register

    return {label: path for path, label in scan_register(root, "file").entries}


class DocClassifier:
    """Reference-compatible classifier: an in-memory register bank built from a folder.

    ``register_root``: folder of register images (label = folder parts + stem, see
    :func:`reference_labels`); None uses the shipped ``register_data/``
    (:func:`retriever.default_register_dir`).
    ``threshold``: on the reference's ``(cos + 1) / 2`` scale in [0, 1] (cosine rule); when None,
    the operating point is ``fpir`` (default 1e-2) of the register's own self-calibrated table.
    ``backend`` / ``gpu_id``: as :func:`encoders.load`; ``model_cfg``: ONNX model path or None.
    """

    def __init__(self, register_root: str | os.PathLike | None = None, threshold: float | None = None,
                 backend: str = "cpu", gpu_id: int = 0, model_cfg: str | os.PathLike | None = None,
                 encoder: Any = None, fpir: float | None = None) -> None:
        import encoders

        from . import default_register_dir

        if register_root is None:
            register_root = default_register_dir()
            if register_root is not None and (register_root / "register").is_dir():
                register_root = register_root / "register"  # the register, not the example captures beside it
            if register_root is None:
                raise RetrieverError("no register_root given and no shipped register_data/ folder found; "
                                     "pass register_root= (a folder with one image per document type)")
        self.register_root = Path(register_root)
        self.encoder = encoder if encoder is not None else encoders.load(model_cfg, backend=backend, gpu_id=gpu_id)
        files = reference_labels(self.register_root)
        labels = list(files)
        feats = self.encoder.encode([files[lab] for lab in labels])
        self.gallery = MemoryGallery(feats, labels, self.encoder, sources=[str(files[lab]) for lab in labels],
                                     name=f"<register {self.register_root}>")
        if threshold is not None:
            threshold = float(threshold)
            if not 0.0 <= threshold <= 1.0:
                raise RetrieverError(f"DocClassifier threshold {threshold!r} is outside [0, 1]: it is on the "
                                     "reference (cos+1)/2 scale (cosine c is (c+1)/2)")
            self.retriever = Retriever(self.gallery, self.encoder, threshold=from_reference_score(threshold), top_k=1)
        else:
            self._self_calibrate(files, labels)
            self.retriever = Retriever(self.gallery, self.encoder, fpir=fpir, top_k=1)
        self._threshold = threshold

    def _self_calibrate(self, files: dict[str, Path], labels: list[str]) -> None:
        """The register's own open-set table (indexer/selfcal.py), kept in memory like the bank."""
        import time

        from indexer import selfcal

        settings = selfcal.Settings()
        t0 = time.perf_counter()
        per = selfcal.captures_per_type(len(labels), settings)
        import hashlib

        # keyed by the image's sha256, as a gallery keys its probes: the same register gives the same table
        chosen = [(i, lab, str(files[lab]), hashlib.sha256(Path(files[lab]).read_bytes()).hexdigest())
                  for i, lab in enumerate(labels[:settings.max_types])]
        probes = selfcal.make_probes(chosen, self.encoder, per, settings)
        rec = selfcal.measure(self.gallery, probes, len(labels), len(set(labels)), settings,
                              {"name": self.encoder.name, "fingerprint": self.encoder.fingerprint})
        rec["probe_seconds"] = round(time.perf_counter() - t0, 3)
        self.gallery.self_calibration = rec

    @property
    def operating_point(self) -> Any:
        """What decides accept/reject (:class:`retriever.thresholds.OperatingPoint`)."""
        return self.retriever.operating_point

    @property
    def threshold(self) -> float | None:
        """The accept threshold on the reference ``(cos + 1) / 2`` scale when decisions are on the cosine
        alone (``threshold=`` given, or a fallback to the model's table); None when the open-set rule
        (cosine + margin) decides: see :attr:`operating_point`."""
        if self._threshold is not None:
            return self._threshold
        op = self.retriever.operating_point
        return None if op.rule.uses_margin else to_reference_score(op.threshold)

    @property
    def bank(self) -> dict[str, np.ndarray]:
        """Label -> register feature, like the reference's ``bank``."""
        return {lab: self.gallery.feats[i] for i, lab in enumerate(self.gallery.labels.tolist())}

    def extract_feature(self, img: "ImageInput") -> np.ndarray:
        """One image -> its L2-normalised feature vector ``(dim,)``."""
        return self.encoder.encode([img])[0]

    def __call__(self, img: "ImageInput") -> tuple[str | None, float]:
        """An image (BGR array, path or bytes) -> ``(label, score)``, or ``(None, score)`` if rejected.

        ``score`` is the best register match on the ``(cos + 1) / 2`` scale.
        """
        res = self.retriever.classify_one(img)
        return (res.label if res.accepted else None), to_reference_score(res.score)

    def __repr__(self) -> str:
        return (f"DocClassifier(register_root={str(self.register_root)!r}, labels={len(self.gallery)}, "
                f"{self.retriever.operating_point.describe()}, encoder={self.encoder!r})")
