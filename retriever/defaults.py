"""The defaults every entry point shares (CLI options, Python API, bulk engines, service), in one place.

Why: a default restated in four signatures drifts; one changed here changes everywhere.
"""
from __future__ import annotations

BATCH_SIZE = 32      # images per batch: one ONNX Runtime call sequence, one FAISS search
TOP_K = 5            # distinct labels listed per result
WORKERS = 2          # decode+encode threads of a bulk job (local engine), or Ray actors
DEFAULT_FPIR = 1e-2  # the open-set operating point when none is asked for
