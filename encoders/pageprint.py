"""Page prints: what verifying a search's candidates by registration needs of a page.

Why: siblings differ in one element, and a capture is tilted, cropped and seen in perspective, so
comparing feature maps cell by cell at fixed positions (encoders.local) compares the one region
that matters with a neighbour of itself.  Registering the capture onto each candidate exemplar
(SIFT keypoints, a MAGSAC homography) and comparing the aligned pages tells them apart better.  The
comparison is a small learned model (galleries built before 2026-12-04: a fixed rule, agreement where the
candidates differ from one another).  On the benchmark's test split, on top of the default model's
re-ranking: look-alike registers TPR@1e-4 0.144 -> 0.563 and DIR@FPIR1e-2 0.223 -> 0.391 (the rule: 0.236,
0.293); the ordinary split TPR@1e-4 0.862 -> 0.925, DIR 0.718 -> 0.808 (scripts/ablate_verify.py,
scripts/results/verify/, scripts/results/verifier/).  It costs several times the encoder per query (SIFT on
the page, ~20 ms), so it is meant as an opt-in.  Needs OpenCV and ONNX Runtime.

An exemplar's print is one fixed-size uint8 row (:func:`pack`), so a gallery can keep prints the way
it keeps exact vectors and local maps: keypoints and descriptors, the page's size, and the page
itself, contrast-normalised and squashed to ``GRID`` x ``GRID``.  A capture's print (:func:`of_image`
with ``keep_gray``) also keeps the grey page it was made from, which is warped onto the candidates.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

__all__ = ["SIDE", "GRID", "WEIGHT", "RULE", "LEARNED", "COMPARISON", "WEIGHTS", "PagePrint", "StoredCapture",
           "aligned", "as_print", "capture_row_bytes", "compare", "check_comparison", "comparison_of", "decode_hw", "memo_tag",
           "of_image", "pack", "pack_capture", "row_bytes", "unpack", "unpack_capture", "verify_deltas"]

SIDE = 320           # keypoints are found on the page shrunk to this longest side (blurred captures
                     # register more often there than at 640: 96 % against 88 % of a val sample)
GRAY_SIDE = 320      # a capture's grey page is kept at this longest side, for warping
COMPARE = 256        # aligned pages are normalised in a COMPARE x COMPARE frame (the page squashed) ...
GRID = 96            # ... and compared at GRID x GRID
KEYPOINTS = 1000
MIN_INLIERS = 10
RATIO = 0.9          # Lowe's ratio test on descriptor matches
VERIFY_VERSION = 1   # bump when verify_deltas changes what it returns: remembered deltas (memo) then lapse
# How the registered capture is compared with each candidate.  "rule": a fixed rule (agreement where the
# candidates differ), what galleries built before 2026-12-04 use.  The learned comparison: a small CNN
# (encoders/default/docretriever-verifier.onnx, scripts/train_verifier.py) trained on sibling sets of training
# families, listwise and with the own type left out (so an unregistered sibling lifts none of its siblings):
# test-lookalike TPR@1e-4 0.236 -> 0.563, DIR@FPIR1e-2 0.293 -> 0.391; test unchanged (scripts/results/verifier/).
RULE = "rule"
LEARNED = "docretriever-verifier-1"
COMPARISON = LEARNED  # what a gallery built now verifies with (its manifest records it)
WEIGHTS = {RULE: 2.0, LEARNED: 0.1}  # mu per comparison: a candidate's score moves by mu x its delta (chosen on val)
WEIGHT = WEIGHTS[COMPARISON]
VERIFIER_FILE = Path(__file__).resolve().parent / "default" / "docretriever-verifier.onnx"
_HEADER = 6          # n keypoints, height, width: three uint16


@dataclass
class PagePrint:
    pts: np.ndarray          # (n, 2) float32 keypoint coordinates in the SIDE frame
    des: np.ndarray          # (n, 128) uint8 SIFT descriptors
    size: tuple[int, int]    # (h, w) of the SIDE frame
    grid: np.ndarray         # (GRID, GRID) float32: the page contrast-normalised, squashed
    gray: np.ndarray | None = None  # uint8, GRAY_SIDE on its longest side: a capture's page, for warping
    # deltas already computed for this capture, by candidate ids in order (a gallery's self-calibration
    # probes keep them between writes: a probe whose candidates did not change is not verified again)
    memo: dict[tuple[int, ...], np.ndarray] | None = None


# OpenCV's CLAHE keeps working buffers in its object, so one instance used by two threads at once gives
# wrong pages (measured: 2-3 of 40 captures printed concurrently got other keypoints, deltas up to 0.08
# off). The bulk engine, the service and a shared Retriever print pages from several threads: each thread
# has its own CLAHE, SIFT and matcher.
_local = threading.local()


def _tools() -> Any:
    t = _local
    if not hasattr(t, "clahe"):
        t.clahe, t.sift, t.matcher = cv2.createCLAHE(2.0, (8, 8)), {}, cv2.BFMatcher(cv2.NORM_L2)
    return t


def _normalised(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Local contrast normalisation: lighting, colour casts and paper tone cancel; edges and marks stay."""
    g = gray.astype(np.float32)
    mu = cv2.GaussianBlur(g, (0, 0), sigma)
    sd = np.sqrt(cv2.GaussianBlur((g - mu) ** 2, (0, 0), sigma)) + 8.0
    return (g - mu) / sd


def _grid(frame: np.ndarray) -> np.ndarray:
    """A COMPARE x COMPARE page -> its normalised GRID x GRID comparison image."""
    return cv2.resize(_normalised(frame, COMPARE / 50), (GRID, GRID), interpolation=cv2.INTER_AREA)


def _shrunk(g: np.ndarray, side: int) -> np.ndarray:
    s = side / max(g.shape)
    size = (max(8, round(g.shape[1] * s)), max(8, round(g.shape[0] * s)))
    return cv2.resize(g, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def of_image(bgr_or_gray: np.ndarray, keypoints: int = KEYPOINTS, keep_gray: bool = False,
             side: int | None = None) -> PagePrint:
    """The print of a page (any size; BGR or grey uint8); keypoints found at ``side`` (default SIDE)."""
    g = bgr_or_gray if bgr_or_gray.ndim == 2 else cv2.cvtColor(bgr_or_gray, cv2.COLOR_BGR2GRAY)
    if g.dtype != np.uint8 or min(g.shape) < 8:
        raise ValueError(f"a page print needs a uint8 image of at least 8 x 8 pixels, got {g.dtype} {g.shape}")
    small = _shrunk(g, int(side or SIDE))
    tools = _tools()
    sift = tools.sift.get(keypoints)
    if sift is None:
        sift = tools.sift[keypoints] = cv2.SIFT_create(nfeatures=keypoints)
    kp, des = sift.detectAndCompute(tools.clahe.apply(small), None)
    kp, des = kp[:keypoints], (des[:keypoints] if des is not None else np.zeros((0, 128), np.float32))
    pts = np.float32([k.pt for k in kp]).reshape(-1, 2)
    grid = _grid(cv2.resize(g, (COMPARE, COMPARE), interpolation=cv2.INTER_AREA))
    gray = _shrunk(g, GRAY_SIDE) if keep_gray else None
    return PagePrint(pts, np.clip(des, 0, 255).astype(np.uint8), small.shape[:2], grid, gray)


def decode_hw(input_hw: tuple[int, int], side: int = SIDE) -> tuple[int, int]:
    """(h, w) to decode a page at when it needs both an encoder input of ``input_hw`` and a print whose
    keypoints are found at ``side``: the reduced JPEG decode then keeps twice the print's detail."""
    return max(int(input_hw[0]), 2 * int(side)), max(int(input_hw[1]), 2 * int(side))


def memo_tag(comparison: str = RULE) -> str:
    """What remembered deltas depend on besides the prints: the verification's settings, version and comparison."""
    tag = f"v{VERIFY_VERSION}-{SIDE}-{GRAY_SIDE}-{COMPARE}-{GRID}-{MIN_INLIERS}-{RATIO:g}"
    return tag if comparison == RULE else f"{tag}-{comparison}"


def comparison_of(record: dict[str, Any] | None) -> str:
    """The comparison a verifying gallery's manifest record names (one built before it was recorded: RULE)."""
    return check_comparison(str((record or {}).get("comparison", RULE)))


def check_comparison(name: str) -> str:
    """``name`` if this docretriever knows that comparison, else a ValueError saying what it knows."""
    if name not in WEIGHTS:
        raise ValueError(f"verification by comparison {name!r} is unknown to this docretriever (it knows "
                         f"{', '.join(sorted(WEIGHTS))}): the gallery was built by a newer version")
    return name


def row_bytes(keypoints: int = KEYPOINTS) -> int:
    """Bytes of one packed print: header, float16 coordinates, descriptors, float16 grid."""
    return _HEADER + keypoints * (4 + 128) + GRID * GRID * 2


def pack(p: PagePrint, keypoints: int = KEYPOINTS) -> np.ndarray:
    """One fixed-size uint8 row (``row_bytes(keypoints)``); keypoints beyond ``keypoints`` are dropped."""
    n = min(len(p.pts), keypoints)
    out = np.zeros(row_bytes(keypoints), np.uint8)
    out[:_HEADER] = np.frombuffer(np.array([n, *p.size], np.uint16).tobytes(), np.uint8)
    o = _HEADER
    pts = np.zeros((keypoints, 2), np.float16)
    pts[:n] = p.pts[:n]
    out[o:o + keypoints * 4] = np.frombuffer(pts.tobytes(), np.uint8)
    o += keypoints * 4
    des = np.zeros((keypoints, 128), np.uint8)
    des[:n] = p.des[:n]
    out[o:o + keypoints * 128] = des.reshape(-1)
    o += keypoints * 128
    out[o:] = np.frombuffer(p.grid.astype(np.float16).tobytes(), np.uint8)
    return out


def capture_row_bytes(keypoints: int = KEYPOINTS) -> int:
    """Bytes of a packed capture print: the print's row, the grey page's size, the page padded to GRAY_SIDE²."""
    return row_bytes(keypoints) + 4 + GRAY_SIDE * GRAY_SIDE


def pack_capture(p: PagePrint, keypoints: int = KEYPOINTS) -> np.ndarray:
    """A capture's print with its grey page, as one fixed-size row (self-calibration keeps its probes so)."""
    if p.gray is None:
        raise ValueError("a capture's print keeps its grey page (make it with keep_gray=True)")
    g = p.gray
    out = np.zeros(capture_row_bytes(keypoints), np.uint8)
    n = row_bytes(keypoints)
    out[:n] = pack(p, keypoints)
    out[n:n + 4] = np.frombuffer(np.array(g.shape[:2], np.uint16).tobytes(), np.uint8)
    page = np.zeros((GRAY_SIDE, GRAY_SIDE), np.uint8)
    page[:g.shape[0], :g.shape[1]] = g
    out[n + 4:] = page.reshape(-1)
    return out


def unpack_capture(row: np.ndarray, keypoints: int = KEYPOINTS) -> PagePrint:
    row = np.ascontiguousarray(row, dtype=np.uint8)
    if row.shape != (capture_row_bytes(keypoints),):
        raise ValueError(f"a packed capture print of {keypoints} keypoints is {capture_row_bytes(keypoints)} bytes, "
                         f"got an array of shape {row.shape}")
    n = row_bytes(keypoints)
    p = unpack(row[:n], keypoints)
    h, w = (int(x) for x in np.frombuffer(row[n:n + 4].tobytes(), np.uint16))
    if not (0 < h <= GRAY_SIDE and 0 < w <= GRAY_SIDE):
        raise ValueError(f"not a packed capture print (grey page {h} x {w})")
    p.gray = row[n + 4:].reshape(GRAY_SIDE, GRAY_SIDE)[:h, :w].copy()
    return p


def unpack(row: np.ndarray, keypoints: int = KEYPOINTS) -> PagePrint:
    row = np.ascontiguousarray(row, dtype=np.uint8)
    if row.shape != (row_bytes(keypoints),):
        raise ValueError(f"a packed page print of {keypoints} keypoints is {row_bytes(keypoints)} bytes, "
                         f"got an array of shape {row.shape}")
    n, h, w = (int(x) for x in np.frombuffer(row[:_HEADER].tobytes(), np.uint16))
    if n > keypoints or not (8 <= h <= 8192 and 8 <= w <= 8192):
        raise ValueError(f"not a packed page print (header: {n} keypoints, {h} x {w})")
    o = _HEADER
    pts = np.frombuffer(row[o:o + keypoints * 4].tobytes(), np.float16).reshape(keypoints, 2)[:n]
    o += keypoints * 4
    des = row[o:o + keypoints * 128].reshape(keypoints, 128)[:n]
    o += keypoints * 128
    grid = np.frombuffer(row[o:].tobytes(), np.float16).reshape(GRID, GRID)
    return PagePrint(pts.astype(np.float32), des.copy(), (h, w), grid.astype(np.float32))


class StoredCapture:
    """A capture kept as its grey page only (PNG, ~30 KB instead of a 253 KB packed print), whose print
    is made again when it is first needed: self-calibration keeps its probes so, and with their
    remembered deltas (``memo``) most probes are never verified again.  Exact: with keypoints found at
    GRAY_SIDE, the print made from the kept page has the same keypoints, descriptors and page."""

    __slots__ = ("png", "keypoints", "side", "memo", "_print")

    def __init__(self, png: bytes, keypoints: int = KEYPOINTS, side: int = SIDE) -> None:
        if int(side) != GRAY_SIDE:
            raise ValueError(f"a capture kept as its grey page needs keypoints found at {GRAY_SIDE} px, not {side}")
        self.png, self.keypoints, self.side = png, int(keypoints), int(side)
        self.memo: dict[tuple[int, ...], np.ndarray] | None = None
        self._print: PagePrint | None = None

    @classmethod
    def of_image(cls, bgr_or_gray: np.ndarray, keypoints: int = KEYPOINTS, side: int = SIDE) -> "StoredCapture":
        """A capture (any size; BGR or grey uint8) kept as the grey page its print would keep."""
        g = bgr_or_gray if bgr_or_gray.ndim == 2 else cv2.cvtColor(bgr_or_gray, cv2.COLOR_BGR2GRAY)
        if g.dtype != np.uint8 or min(g.shape) < 8:
            raise ValueError(f"a page print needs a uint8 image of at least 8 x 8 pixels, got {g.dtype} {g.shape}")
        ok, buf = cv2.imencode(".png", _shrunk(g, GRAY_SIDE))
        if not ok:
            raise ValueError("cannot encode the capture's grey page")
        return cls(buf.tobytes(), keypoints, side)

    def page_print(self) -> PagePrint:
        if self._print is None:
            g = cv2.imdecode(np.frombuffer(self.png, np.uint8), cv2.IMREAD_GRAYSCALE)
            if g is None:
                raise ValueError("a stored capture's grey page cannot be decoded")
            self._print = of_image(g, self.keypoints, keep_gray=True, side=self.side)
        return self._print


def as_print(q: "PagePrint | StoredCapture") -> PagePrint:
    """The print of a capture, made now if it was kept as its grey page."""
    return q.page_print() if isinstance(q, StoredCapture) else q




def homography(q: PagePrint, r: PagePrint, ratio: float = RATIO) -> tuple[np.ndarray | None, int]:
    """Capture -> exemplar homography (SIDE-frame coordinates) and its inlier count."""
    if len(q.des) < 8 or len(r.des) < 8:
        return None, 0
    # brute force is exact: FLANN's randomised trees made verdicts depend on call order
    pairs = _tools().matcher.knnMatch(q.des.astype(np.float32), r.des.astype(np.float32), k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if len(good) < 10:
        return None, 0
    H, mask = cv2.findHomography(q.pts[[m.queryIdx for m in good]], r.pts[[m.trainIdx for m in good]],
                                 cv2.USAC_MAGSAC, 5.0)
    return (None, 0) if H is None else (H, int(mask.sum()))


def aligned(query: PagePrint, cands: list[PagePrint], min_inliers: int = MIN_INLIERS, tries: int = 2,
            ratio: float = RATIO) -> tuple[np.ndarray, np.ndarray] | None:
    """The capture registered onto the first of ``cands[:tries]`` it registers onto (siblings share one
    frame: one registration serves all), as a normalised GRID x GRID page like the exemplars' ``grid``,
    and the (GRID, GRID) float32 mask of where the capture covers the frame; None if it registers onto none."""
    if query.gray is None:
        raise ValueError("the capture's page print has no grey page (make it with keep_gray=True)")
    H = ref = None
    for c in cands[:tries]:
        H, inl = homography(query, c, ratio)
        if H is not None and inl >= min_inliers:
            ref = c
            break
        H = None
    if H is None or ref is None:
        return None
    h, w = ref.size
    (qh, qw), (gh, gw) = query.size, query.gray.shape[:2]
    # grey page -> the capture's keypoint frame -> the exemplar's keypoint frame -> the squashed compare frame
    to_compare = np.diag([COMPARE / w, COMPARE / h, 1.0]) @ H @ np.diag([qw / gw, qh / gh, 1.0])
    warped = cv2.warpPerspective(query.gray, to_compare, (COMPARE, COMPARE), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
    seen = cv2.warpPerspective(np.full(query.gray.shape, 255, np.uint8), to_compare, (COMPARE, COMPARE),
                               flags=cv2.INTER_NEAREST)
    seen = (cv2.resize(seen, (GRID, GRID), interpolation=cv2.INTER_AREA) > 250).astype(np.float32)
    return _grid(warped), seen


_verifier: dict[str, Any] = {}
_verifier_lock = threading.Lock()


def _learned_session() -> Any:
    """The learned comparison's ONNX Runtime session, made once per process (its runs are thread-safe)."""
    with _verifier_lock:
        sess = _verifier.get(LEARNED)
        if sess is None:
            import onnxruntime as ort

            if not VERIFIER_FILE.is_file():
                raise FileNotFoundError(f"{VERIFIER_FILE}: the learned verification model is missing from the install")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1  # one query's five candidates: threads cost more than they save
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(VERIFIER_FILE), opts, providers=["CPUExecutionProvider"])
            name = sess.get_modelmeta().custom_metadata_map.get("name")
            if name != LEARNED:
                raise ValueError(f"{VERIFIER_FILE} is {name!r}, not the {LEARNED!r} this docretriever was measured with")
            _verifier[LEARNED] = sess
        return sess


def verify_deltas(query: PagePrint, cands: list[PagePrint], min_inliers: int = MIN_INLIERS,
                  tries: int = 2, ratio: float = RATIO, comparison: str = RULE) -> np.ndarray:
    """(k,) float32: each candidate's agreement with the capture registered onto it, minus the candidates'
    mean; all 0 when the capture registers onto none of the first ``tries`` candidates (siblings share one
    frame: one registration serves all).  ``comparison``: RULE (agreement where the candidates differ from
    one another) or LEARNED (the learned model's scores).  ``query`` must keep its grey page
    (``of_image(..., keep_gray=True)``)."""
    k = len(cands)
    check_comparison(comparison)
    if query.gray is None:
        raise ValueError("the capture's page print has no grey page (make it with keep_gray=True)")
    if k < 2:
        return np.zeros(k, np.float32)
    got = aligned(query, cands, min_inliers, tries, ratio)
    if got is None:
        return np.zeros(k, np.float32)
    return compare(got[0], got[1], np.stack([c.grid for c in cands]), comparison)


def compare(qg: np.ndarray, seen: np.ndarray, cg: np.ndarray, comparison: str = RULE,
            score: Callable[..., np.ndarray] | None = None) -> np.ndarray:
    """(k,) float32 centred deltas of the registered capture ``qg`` (with its coverage ``seen``) against the
    candidates' grids ``cg`` (k, GRID, GRID).  ``score``: for LEARNED, another scorer with the ONNX model's
    inputs and output (a torch module in training); by default the shipped model."""
    check_comparison(comparison)
    cg = np.asarray(cg, dtype=np.float32)
    k = len(cg)
    if comparison == LEARNED:
        feeds = {"qg": qg[None].astype(np.float32), "cg": cg[None], "seen": seen[None].astype(np.float32),
                 "valid": np.ones((1, k), bool)}
        s = (score(**feeds) if score is not None else _learned_session().run(None, feeds)[0])[0]
        return (s - s.mean()).astype(np.float32)
    where = np.zeros((GRID, GRID), np.float32)
    for i in range(k):
        for j in range(i + 1, k):
            where += np.abs(cg[i] - cg[j])
    where = cv2.GaussianBlur(where, (0, 0), 1.0) * seen
    diff = np.stack([cv2.GaussianBlur(np.abs(qg - c), (0, 0), 1.0) for c in cg])
    agree = -(diff * where).sum(axis=(1, 2)) / max(float(where.sum()), 1e-6)
    return (agree - agree.mean()).astype(np.float32)
