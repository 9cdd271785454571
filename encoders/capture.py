"""Capture simulator: turn a clean document render into what a phone/scanner pipeline delivers.

Why: the encoder is trained on clean synthetic renders but queried with localiser crops of real
photos and scans.  ``simulate_capture`` models that gap (localiser corner error and background
slivers, in-plane rotation, low resolution, uneven light, shadows, glare, blur, sensor noise,
white balance, grayscale scans, JPEG) and returns JPEG bytes, so training sees the same decode
path as inference.  Two presets: ``"train"`` and a clearly harder ``"eval"`` that adds effects
training never sees (strong keystone, paper curl, a thumb over the card, screen moire, vignetting,
double JPEG) so that the benchmark measures generalisation, not memorised augmentations.

Speed: every expensive step runs at the (small) output resolution; smooth fields (light,
shadow, glare, vignette, moire beats) are computed on a coarse grid and upsampled; sensor noise
comes from a fixed noise tile read at a random offset.  All randomness comes from the ``rng``
argument, so a fixed generator state gives identical bytes.

Inference-side (numpy and OpenCV only): a gallery's self-calibration simulates captures of its
exemplars with it (indexer/selfcal.py), and training and the benchmark import it from here.
The reference project's view augmentation (albumentations) lives in ``encoders.training.capture``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Rng = np.random.Generator
Range = tuple[float, float]

__all__ = ["CaptureParams", "TRAIN", "TRAIN_WIDE", "EVAL", "PRESETS", "simulate_capture", "simulate_capture_array"]


@dataclass(frozen=True)
class CaptureParams:
    """Ranges (uniform) and probabilities of every capture effect.  Widths are output pixels."""
    name: str
    width: tuple[int, int]              # output (localiser crop) width
    aspect_jitter: float                # relative error of the localiser's aspect ratio
    corner_sigma: float                 # corner localisation error, fraction of the side (normal sd)
    corner_max: float                   # ... clipped to this
    rotate_deg: float                   # in-plane rotation, +-degrees
    p_sliver: float                     # probability that the crop shows background at 1-2 edges
    sliver: Range                       # sliver width as a fraction of the side
    p_keystone: float                   # true perspective (one side shorter) left after rectification
    keystone: Range
    p_lowres: float                     # optics/sensor resolution lower than the crop (upsampled)
    lowres: Range                       # effective resolution factor
    p_gradient: float                   # smooth uneven lighting
    gradient: Range                     # peak-to-peak gain change
    p_shadow: float                     # soft dark polygon (hand/phone shadow)
    shadow: Range                       # darkening inside the shadow
    p_glare: float                      # bright elliptical highlight
    glare: Range                        # peak glare mix towards white
    p_blur: float
    motion_px: Range                    # motion blur length at 600 px output width
    defocus_px: Range                   # defocus/gaussian sigma at 600 px output width
    p_noise: float
    noise_std: Range                    # sensor noise std (of 255) at mid-gray
    chroma_noise: Range                 # low-frequency colour (ISO) noise std
    p_wb: float                         # white-balance / colour cast
    wb: float                           # +- per-channel gain
    contrast: Range
    brightness: Range                   # additive, of 255
    gamma: Range
    p_gray: float                       # grayscale output (scanner / B&W mode)
    p_scanner: float                    # flatbed-scanner capture: flat light, tiny skew, lid background
    jpeg_quality: tuple[int, int]
    # effects "train" never does ------------------------------------------------------------
    p_double_jpeg: float = 0.0
    p_vignette: float = 0.0
    vignette: Range = (0.0, 0.0)
    p_curl: float = 0.0                 # paper bend/curl warp with shading
    curl: Range = (0.0, 0.0)
    p_finger: float = 0.0               # thumb partially covering the document
    p_screen: float = 0.0               # photo of a screen: moire bands + pixel grid
    p_defocus_strong: float = 0.0


TRAIN = CaptureParams(
    name="train", width=(300, 1000), aspect_jitter=0.04, corner_sigma=0.012, corner_max=0.035,
    rotate_deg=3.0, p_sliver=0.3, sliver=(0.01, 0.05), p_keystone=0.0, keystone=(0.0, 0.0),
    p_lowres=0.2, lowres=(0.55, 0.9), p_gradient=0.7, gradient=(0.05, 0.35), p_shadow=0.3,
    shadow=(0.12, 0.45), p_glare=0.2, glare=(0.2, 0.6), p_blur=0.4, motion_px=(2.0, 6.0),
    defocus_px=(0.5, 1.5), p_noise=0.7, noise_std=(1.0, 7.0), chroma_noise=(0.0, 3.0), p_wb=0.6,
    wb=0.08, contrast=(0.8, 1.12), brightness=(-20.0, 12.0), gamma=(0.8, 1.25), p_gray=0.08,
    p_scanner=0.1, jpeg_quality=(30, 90),
)

EVAL = CaptureParams(
    name="eval", width=(240, 1100), aspect_jitter=0.08, corner_sigma=0.025, corner_max=0.07,
    rotate_deg=7.0, p_sliver=0.5, sliver=(0.02, 0.10), p_keystone=0.5, keystone=(0.03, 0.12),
    p_lowres=0.35, lowres=(0.35, 0.8), p_gradient=0.8, gradient=(0.1, 0.55), p_shadow=0.45,
    shadow=(0.2, 0.65), p_glare=0.35, glare=(0.3, 0.9), p_blur=0.55, motion_px=(3.0, 11.0),
    defocus_px=(0.8, 2.6), p_noise=0.85, noise_std=(2.0, 13.0), chroma_noise=(1.0, 7.0), p_wb=0.8,
    wb=0.12, contrast=(0.65, 1.2), brightness=(-35.0, 18.0), gamma=(0.7, 1.45), p_gray=0.15,
    p_scanner=0.12, jpeg_quality=(20, 85),
    p_double_jpeg=0.4, p_vignette=0.4, vignette=(0.15, 0.45), p_curl=0.35, curl=(0.02, 0.06),
    p_finger=0.25, p_screen=0.12, p_defocus_strong=0.1,
)

# Training preset covering every *kind* of effect real captures show (curl, thumbs, screens,
# keystone, double JPEG...), with its own, milder ranges.  "train" alone never bends paper or
# photographs a screen, so a model trained only on it meets those first at evaluation time.
TRAIN_WIDE = CaptureParams(
    name="train_wide", width=(260, 1000), aspect_jitter=0.06, corner_sigma=0.02, corner_max=0.055,
    rotate_deg=5.0, p_sliver=0.4, sliver=(0.01, 0.08), p_keystone=0.35, keystone=(0.02, 0.09),
    p_lowres=0.3, lowres=(0.45, 0.85), p_gradient=0.75, gradient=(0.05, 0.45), p_shadow=0.4,
    shadow=(0.12, 0.55), p_glare=0.3, glare=(0.2, 0.75), p_blur=0.5, motion_px=(2.0, 9.0),
    defocus_px=(0.5, 2.0), p_noise=0.8, noise_std=(1.0, 10.0), chroma_noise=(0.0, 5.0), p_wb=0.7,
    wb=0.10, contrast=(0.72, 1.15), brightness=(-28.0, 15.0), gamma=(0.75, 1.35), p_gray=0.12,
    p_scanner=0.1, jpeg_quality=(25, 90),
    p_double_jpeg=0.3, p_vignette=0.3, vignette=(0.1, 0.35), p_curl=0.25, curl=(0.015, 0.045),
    p_finger=0.2, p_screen=0.08, p_defocus_strong=0.05,
)

PRESETS: dict[str, CaptureParams] = {"train": TRAIN, "train_wide": TRAIN_WIDE, "eval": EVAL}

_NOISE_TILE: np.ndarray | None = None
_TILE = 1664
_NOISE_SCALE = 24.0   # int8 tile holds N(0,1) * 24


def _noise_tile() -> np.ndarray:
    """Fixed-seed int8 gaussian tile (shared, read at random offsets): fast, deterministic noise."""
    global _NOISE_TILE
    if _NOISE_TILE is None:
        g = np.random.default_rng(0x5EED)
        n = g.standard_normal((_TILE, _TILE, 3), dtype=np.float32) * _NOISE_SCALE
        _NOISE_TILE = np.clip(np.rint(n), -127, 127).astype(np.int8)
    return _NOISE_TILE


def _u(rng: Rng, r: Range) -> float:
    return float(rng.uniform(r[0], r[1]))


def _params(strength: str | CaptureParams) -> CaptureParams:
    if isinstance(strength, CaptureParams):
        return strength
    try:
        return PRESETS[strength]
    except KeyError:
        raise ValueError(f"unknown capture strength {strength!r}; expected one of {sorted(PRESETS)} "
                         f"or a CaptureParams") from None


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------

# BGR desk / tablecloth colours: white, greys, black, beige, wood-ish, navy, dark green, muted red
_DESK = np.array([[235, 235, 235], [180, 180, 175], [110, 110, 110], [35, 35, 35], [170, 200, 215],
                  [90, 130, 170], [60, 90, 130], [90, 50, 30], [60, 90, 50], [60, 60, 130],
                  [200, 190, 170]], np.float32)


def _background(rng: Rng, h: int, w: int, background: np.ndarray | None, scanner: bool) -> np.ndarray:
    """Scene behind the document, only visible in slivers: a given image or a desk texture."""
    if scanner:
        v = 250 if rng.random() < 0.6 else int(rng.integers(15, 60))
        return np.full((h, w, 3), v, np.uint8)
    if background is not None and background.ndim == 3 and min(background.shape[:2]) >= 16:
        bh, bw = background.shape[:2]
        s = rng.uniform(0.3, 1.0)
        ch, cw = max(8, int(bh * s)), max(8, int(bw * s))
        y0 = int(rng.integers(0, bh - ch + 1))
        x0 = int(rng.integers(0, bw - cw + 1))
        return cv2.resize(background[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    sh, sw = max(4, h // 4), max(4, w // 4)
    kind = rng.random()
    if kind < 0.4:  # wood: streaky grain
        base = np.array([rng.uniform(40, 110), rng.uniform(70, 140), rng.uniform(110, 190)], np.float32)
        ang = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        t = xx * np.cos(ang) + yy * np.sin(ang)
        warp = cv2.resize(rng.standard_normal((6, 6)).astype(np.float32), (sw, sh)) * 12.0
        grain = np.sin((t + warp) * rng.uniform(0.2, 0.7)) * 0.5 + 0.5
        img = base[None, None, :] * (0.75 + 0.35 * grain[..., None])
    elif kind < 0.75:  # plain desk/tablecloth with a soft gradient: mostly muted colours
        base = _DESK[int(rng.integers(len(_DESK)))] * rng.uniform(0.8, 1.15) + rng.uniform(-15, 15, 3)
        base = np.clip(base, 0, 255).astype(np.float32)
        gy = np.linspace(0.85, 1.15, sh, dtype=np.float32)[:, None, None]
        img = base[None, None, :] * (gy if rng.random() < 0.5 else gy[::-1])
        img = np.broadcast_to(img, (sh, sw, 3)).copy()
    else:  # fabric/carpet: blotchy noise
        base = np.clip(_DESK[int(rng.integers(len(_DESK)))] + rng.uniform(-25, 25, 3), 0, 255).astype(np.float32)
        blot = cv2.resize(rng.standard_normal((sh // 4 + 2, sw // 4 + 2, 3)).astype(np.float32), (sw, sh))
        img = base[None, None, :] + blot * rng.uniform(8, 30)
    img = img + rng.standard_normal((sh, sw, 1)).astype(np.float32) * 5.0
    return cv2.resize(np.clip(img, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)


def _quad(rng: Rng, p: CaptureParams, W: float, H: float, scanner: bool) -> np.ndarray:
    """Corners (TL, TR, BR, BL) in document pixels that the localiser believes are the document."""
    q = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float64)
    side = np.array([W, H])
    if scanner:
        sig, mx, rot = 0.004, 0.01, 1.5
    else:
        sig, mx, rot = p.corner_sigma, p.corner_max, p.rotate_deg
    q += np.clip(rng.normal(0, sig, (4, 2)), -mx, mx) * side
    if not scanner and rng.random() < p.p_keystone:  # one side foreshortened: strong perspective
        k = _u(rng, p.keystone)
        edge = int(rng.integers(4))
        a, b = edge, (edge + 1) % 4
        mid = (q[a] + q[b]) / 2
        f = 1 + k if rng.random() < 0.5 else 1 - k  # that edge looks longer or shorter
        q[a] = mid + (q[a] - mid) * f
        q[b] = mid + (q[b] - mid) * f
    if rng.random() < (0.5 if scanner else p.p_sliver):  # background visible at 1-2 edges
        for edge in rng.choice(4, size=1 + int(rng.random() < 0.35), replace=False):
            d = _u(rng, p.sliver) * (W if edge in (1, 3) else H)
            if edge == 0:
                q[[0, 1], 1] -= d
            elif edge == 1:
                q[[1, 2], 0] += d
            elif edge == 2:
                q[[2, 3], 1] += d
            else:
                q[[3, 0], 0] -= d
    ang = math.radians(rng.uniform(-rot, rot))
    c = q.mean(0)
    R = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    return (q - c) @ R.T + c


def _curl_maps(rng: Rng, p: CaptureParams, Minv: np.ndarray, h: int, w: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Remap field (output -> source) of a bent page, and the matching coarse shading gain."""
    gh, gw = max(8, h // 8), max(8, w // 8)
    u = np.linspace(0, 1, gw, dtype=np.float64)[None, :].repeat(gh, 0)
    v = np.linspace(0, 1, gh, dtype=np.float64)[:, None].repeat(gw, 1)
    if rng.random() < 0.5:  # bend axis: vertical or horizontal
        a, b, L = u, v, h
    else:
        a, b, L = v, u, w
    amp = _u(rng, p.curl) * L
    ph = rng.uniform(-0.3, 0.3)
    bow = np.cos(np.pi * (a - 0.5 - ph))                         # lines bow along the bend axis
    disp_b = amp * (bow - 0.5) * (1.0 + rng.uniform(0.5, 1.5) * (b - 0.5))
    disp_a = amp * 0.4 * np.sin(2 * np.pi * a)                  # non-uniform foreshortening
    xs = u * (w - 1)
    ys = v * (h - 1)
    if a is u:
        xs, ys = xs + disp_a, ys + disp_b
    else:
        xs, ys = xs + disp_b, ys + disp_a
    pts = np.stack([xs, ys, np.ones_like(xs)], -1) @ Minv.T
    src = (pts[..., :2] / pts[..., 2:3]).astype(np.float32)
    maps = cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR)
    shade = (1.0 - rng.uniform(0.05, 0.25) * np.sin(np.pi * (a - 0.5 - ph)) ** 2).astype(np.float32)
    return maps, shade


def _geometry(doc: np.ndarray, rng: Rng, p: CaptureParams, background: np.ndarray | None,
              scanner: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Localiser crop at output size; returns the image and an optional coarse curl shading."""
    H0, W0 = doc.shape[:2]
    w = int(rng.integers(p.width[0], p.width[1] + 1))
    aspect = (H0 / W0) * (1 + rng.uniform(-p.aspect_jitter, p.aspect_jitter))
    h = max(16, int(round(w * aspect)))
    # Downscale early (area filter), folding the "low optical resolution" effect into it.
    f = _u(rng, p.lowres) if rng.random() < p.p_lowres else 1.0
    # Halving with the area filter is OpenCV's fast path (other factors are ~10x slower); the
    # warp does the remaining (< 2x) scaling.  "Low resolution" optics: shrink to f x the crop
    # width so that the warp upsamples (a soft result).
    target = f * w * 1.05
    src = doc
    while src.shape[1] >= 2 * target and min(src.shape[:2]) >= 32:
        src = cv2.resize(src, (src.shape[1] // 2, src.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if f < 1.0 and src.shape[1] > target * 1.1:
        src = cv2.resize(src, (max(8, int(target)), max(8, int(target * H0 / W0))), interpolation=cv2.INTER_LINEAR)
    Hs, Ws = src.shape[:2]
    q = _quad(rng, p, float(Ws), float(Hs), scanner)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    M = cv2.getPerspectiveTransform(q.astype(np.float32), dst)
    outside = (q[:, 0].min() < -0.5 or q[:, 1].min() < -0.5 or q[:, 0].max() > Ws + 0.5
               or q[:, 1].max() > Hs + 0.5)
    curl = not scanner and rng.random() < p.p_curl
    if outside or curl:
        out = _background(rng, h, w, background, scanner)
        border = cv2.BORDER_TRANSPARENT
    else:
        out, border = None, cv2.BORDER_REPLICATE
    shade = None
    if curl:
        maps, shade = _curl_maps(rng, p, np.linalg.inv(M), h, w)
        out = cv2.remap(src, maps, None, cv2.INTER_LINEAR, dst=out, borderMode=border)
    else:
        out = cv2.warpPerspective(src, M, (w, h), dst=out, flags=cv2.INTER_LINEAR, borderMode=border)
    return out, shade


# ---------------------------------------------------------------------------------------------
# optics and light
# ---------------------------------------------------------------------------------------------

def _blur(img: np.ndarray, rng: Rng, p: CaptureParams) -> np.ndarray:
    """Motion or defocus blur; big kernels run on a downscaled copy (blurred images are smooth)."""
    scale = img.shape[1] / 600.0
    strong = rng.random() < p.p_defocus_strong
    if rng.random() < 0.45 and not strong:
        L = _u(rng, p.motion_px) * scale
        if L < 1.5:
            return img
        red = max(1.0, L / 5.0)
        small = img if red == 1.0 else cv2.resize(img, None, fx=1 / red, fy=1 / red, interpolation=cv2.INTER_AREA)
        k = max(3, int(round(L / red)) | 1)
        ker = np.zeros((k, k), np.float32)
        ker[k // 2, :] = 1.0
        ang = rng.uniform(0, 180)
        ker = cv2.warpAffine(ker, cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), ang, 1.0), (k, k))
        ker /= max(ker.sum(), 1e-6)
        small = cv2.filter2D(small, -1, ker, borderType=cv2.BORDER_REPLICATE)
    else:
        sig = _u(rng, p.defocus_px) * scale * (2.0 if strong else 1.0)
        if sig < 0.3:
            return img
        red = max(1.0, sig / 1.5)
        small = img if red == 1.0 else cv2.resize(img, None, fx=1 / red, fy=1 / red, interpolation=cv2.INTER_AREA)
        r = sig / red
        if rng.random() < 0.5:  # disk (defocus) kernel
            rad = max(1, int(math.ceil(r * 1.5)))
            ker = np.zeros((2 * rad + 1, 2 * rad + 1), np.float32)
            cv2.circle(ker, (rad, rad), rad, 1.0, -1, lineType=cv2.LINE_AA)
            small = cv2.filter2D(small, -1, ker / ker.sum(), borderType=cv2.BORDER_REPLICATE)
        else:
            small = cv2.GaussianBlur(small, (0, 0), r)
    if small.shape[:2] != img.shape[:2]:
        small = cv2.resize(small, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    return small


def _tone_lut(rng: Rng, p: CaptureParams, scanner: bool) -> np.ndarray:
    """Per-channel LUT: contrast, brightness, gamma and white balance in one table."""
    x = np.arange(256, dtype=np.float32) / 255.0
    if scanner:  # scanners whiten paper and deepen ink
        c, b, g = rng.uniform(1.0, 1.3), rng.uniform(0, 25) / 255, rng.uniform(0.8, 1.1)
        wb = 1 + rng.uniform(-0.03, 0.03, 3)
    else:
        c, b, g = _u(rng, p.contrast), _u(rng, p.brightness) / 255, _u(rng, p.gamma)
        wb = 1 + (rng.uniform(-p.wb, p.wb, 3) if rng.random() < p.p_wb else np.zeros(3))
    y = np.clip((x - 0.5) * c + 0.5 + b, 0, 1) ** g
    lut = np.clip(y[:, None] * wb[None, :].astype(np.float32) * 255.0, 0, 255)
    return np.rint(lut).astype(np.uint8).reshape(256, 1, 3)


def _light_fields(rng: Rng, p: CaptureParams, h: int, w: int, gh: int, gw: int, scanner: bool,
                  shade: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Coarse (gh x gw) multiplicative gain (gradient, shadow, vignette, curl shading) and glare
    mix towards white; None when absent.  Smooth fields: the caller upsamples them once."""
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    u, v = xx / (gw - 1), yy / (gh - 1)
    gain = np.ones((gh, gw), np.float32)
    glare = None
    used = False
    if shade is not None:
        gain *= cv2.resize(shade, (gw, gh))
        used = True
    if not scanner and rng.random() < p.p_gradient:
        g = _u(rng, p.gradient)
        ang = rng.uniform(0, 2 * np.pi)
        t = (u - 0.5) * np.cos(ang) + (v - 0.5) * np.sin(ang)
        if rng.random() < 0.4:  # point light: radial falloff
            cx, cy = rng.uniform(-0.3, 1.3, 2)
            t = np.sqrt((u - cx) ** 2 + (v - cy) ** 2)
            t = 0.5 - t / max(float(t.max()), 1e-6)
        gain *= 1 + g * t
        used = True
    if not scanner and rng.random() < p.p_shadow:
        m = np.zeros((gh, gw), np.float32)
        # polygon entering from a random edge (a hand or the phone)
        n = int(rng.integers(3, 7))
        edge = int(rng.integers(4))
        depth = rng.uniform(0.2, 0.7)
        pts = []
        for _ in range(n):
            a, b = rng.uniform(-0.2, 1.2), rng.uniform(-0.3, depth)
            pts.append((a, b))
        pts = np.array(pts)
        if edge == 1:
            pts = pts[:, ::-1]
        elif edge == 2:
            pts[:, 1] = 1 - pts[:, 1]
        elif edge == 3:
            pts = pts[:, ::-1]
            pts[:, 0] = 1 - pts[:, 0]
        poly = (pts * [gw, gh]).astype(np.int32)
        cv2.fillPoly(m, [cv2.convexHull(poly)], 1.0)
        m = cv2.GaussianBlur(m, (0, 0), max(0.8, rng.uniform(0.02, 0.08) * gw))
        gain *= 1 - _u(rng, p.shadow) * m
        used = True
    if not scanner and rng.random() < p.p_vignette:
        r2 = ((u - 0.5) ** 2 + (v - 0.5) ** 2 * (h / w) ** 2) / (0.5 ** 2 * (1 + (h / w) ** 2))
        gain *= 1 - _u(rng, p.vignette) * r2
        used = True
    if not scanner and rng.random() < p.p_glare:
        cx, cy = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9)
        ax, ay = rng.uniform(0.05, 0.3), rng.uniform(0.03, 0.2)
        ang = rng.uniform(0, np.pi)
        du, dv = (u - cx) * (w / max(h, w)), (v - cy) * (h / max(h, w))
        a = du * np.cos(ang) + dv * np.sin(ang)
        b = -du * np.sin(ang) + dv * np.cos(ang)
        d2 = (a / ax) ** 2 + (b / ay) ** 2
        glare = (_u(rng, p.glare) * np.exp(-d2 * rng.uniform(0.7, 2.0)) ** 0.7).astype(np.float32)
        glare = np.minimum(glare * 1.3, 1.0)
    return (np.clip(gain, 0.05, 2.0) if used else None), glare


def _finger(rng: Rng, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Alpha mask and shaded skin colour of a thumb entering from an edge, at half resolution."""
    s = 2
    mh, mw = max(8, h // s), max(8, w // s)
    mask = np.zeros((mh, mw), np.float32)
    edge = int(rng.integers(4))
    t = rng.uniform(0.15, 0.85)
    size = min(mh, mw)
    L, Wd = rng.uniform(0.25, 0.5) * size, rng.uniform(0.12, 0.2) * size
    if edge == 0:
        c, ang = (t * mw, 0), 90
    elif edge == 1:
        c, ang = (mw, t * mh), 180
    elif edge == 2:
        c, ang = (t * mw, mh), 270
    else:
        c, ang = (0, t * mh), 0
    ang += rng.uniform(-35, 35)
    cv2.ellipse(mask, (int(c[0]), int(c[1])), (int(L), int(Wd)), ang, 0, 360, 1.0, -1, cv2.LINE_AA)
    small = cv2.resize(mask, (max(4, mw // 8), max(4, mh // 8)), interpolation=cv2.INTER_AREA)
    inner = cv2.resize(cv2.GaussianBlur(small, (0, 0), max(0.5, Wd / 16)), (mw, mh))
    mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.8, 2.5))
    r = rng.uniform(170, 240)
    g = r * rng.uniform(0.68, 0.85)
    skin = np.array([g * rng.uniform(0.72, 0.9), g, r], np.float32) * np.float32(rng.uniform(0.45, 1.0))  # BGR
    shade = (0.55 + 0.55 * inner)[..., None] * skin[None, None, :]
    return mask, shade.astype(np.float32)


def _screen_pattern(rng: Rng, h: int, w: int, gh: int, gw: int) -> tuple[np.ndarray, np.ndarray]:
    """Photo of a display: coarse (gh x gw) coloured moire beat and a full-size pixel grid gain."""
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    f = rng.uniform(0.06, 0.22)
    t = (xx * np.cos(ang) + yy * np.sin(ang)) * f
    ph = rng.uniform(0, 2 * np.pi, 3)
    a = rng.uniform(0.04, 0.12)
    bands = np.stack([1 + a * np.sin(t + ph[c]) for c in range(3)], -1).astype(np.float32)
    px = rng.uniform(2.2, 4.5)
    gx = np.cos(np.arange(w, dtype=np.float32) * (2 * np.pi / px))
    gy = np.cos(np.arange(h, dtype=np.float32) * (2 * np.pi / px))
    grid = (1 - rng.uniform(0.04, 0.12) * (0.5 + 0.25 * (gx[None, :] + gy[:, None]))).astype(np.float32)
    return bands, grid


def _add_noise(f: np.ndarray, rng: Rng, p: CaptureParams) -> None:
    """In place: sensor noise (fixed tile at a random offset; colour or luminance-only) plus
    low-frequency chroma (ISO) noise."""
    h, w = f.shape[:2]
    sd = _u(rng, p.noise_std)
    tile = _noise_tile()
    if h <= _TILE and w <= _TILE:
        oy, ox = int(rng.integers(0, _TILE - h + 1)), int(rng.integers(0, _TILE - w + 1))
        n = tile[oy:oy + h, ox:ox + w]
    else:
        n = np.tile(tile, (h // _TILE + 1, w // _TILE + 1, 1))[:h, :w]
    if rng.random() < 0.5:  # luminance-only noise
        nf = cv2.cvtColor(np.ascontiguousarray(n[:, :, 0]).astype(np.float32), cv2.COLOR_GRAY2BGR)
    else:
        nf = n.astype(np.float32)
    cv2.scaleAdd(nf, sd / _NOISE_SCALE, f, dst=f)
    cs = _u(rng, p.chroma_noise)
    if cs > 0.3:
        ch, cw = max(4, h // 4), max(4, w // 4)
        c = rng.standard_normal((ch, cw, 3), dtype=np.float32) * np.float32(cs)
        cv2.add(f, cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR), dst=f)


def simulate_capture_array(doc_bgr: np.ndarray, rng: Rng, strength: str | CaptureParams = "train",
                           background: np.ndarray | None = None) -> tuple[np.ndarray, int, int | None]:
    """The capture before encoding: (BGR uint8 image, final JPEG quality, first JPEG quality or None)."""
    if doc_bgr.ndim != 3 or doc_bgr.shape[2] != 3 or doc_bgr.dtype != np.uint8:
        raise ValueError(f"simulate_capture expects an HxWx3 uint8 BGR image, got {doc_bgr.shape} {doc_bgr.dtype}")
    p = _params(strength)
    scanner = rng.random() < p.p_scanner
    img, shade = _geometry(doc_bgr, rng, p, background, scanner)
    h, w = img.shape[:2]
    finger = (not scanner) and rng.random() < p.p_finger
    screen = (not scanner) and rng.random() < p.p_screen
    if finger:
        mask, skin = _finger(rng, h, w)
    if rng.random() < (0.3 if scanner else p.p_blur):
        img = _blur(img, rng, p)
    img = cv2.LUT(img, _tone_lut(rng, p, scanner))
    # Everything photometric is out = img * A + B with smooth per-channel fields A, B built at low
    # resolution and upsampled once (a few full-resolution passes in total, all contiguous).
    gh, gw = max(8, h // 8), max(8, w // 8)
    gain, glare = _light_fields(rng, p, h, w, gh, gw, scanner, shade)
    A = B = grid = None
    if gain is not None:
        A = cv2.merge([gain, gain, gain])
    if screen:
        bands, grid = _screen_pattern(rng, h, w, gh, gw)
        A = bands if A is None else A * bands
    if glare is not None:  # mix towards white: f*(1-g) + 255*g
        A = (np.ones((gh, gw, 3), np.float32) if A is None else A) * (1 - glare)[..., None]
        B = cv2.merge([glare, glare, glare]) * np.float32(255.0)
    if finger:  # the thumb is in the scene: lit like the paper, at half resolution
        mh, mw = mask.shape[:2]
        Ah = np.ones((mh, mw, 3), np.float32) if A is None else cv2.resize(A, (mw, mh))
        Bh = np.zeros((mh, mw, 3), np.float32) if B is None else cv2.resize(B, (mw, mh))
        m3 = cv2.merge([mask, mask, mask])
        B = Bh + skin * m3 * Ah
        A = Ah * (1 - m3)
    noise = rng.random() < (0.5 if scanner else p.p_noise)
    if A is None and B is None and grid is None and not noise:
        out = img
    else:
        if A is not None:
            f = cv2.multiply(img, cv2.resize(A, (w, h), interpolation=cv2.INTER_LINEAR), dtype=cv2.CV_32F)
        else:
            f = img.astype(np.float32)
        if B is not None:
            cv2.add(f, cv2.resize(B, (w, h), interpolation=cv2.INTER_LINEAR), dst=f)
        if grid is not None:
            cv2.multiply(f, cv2.merge([grid, grid, grid]), dst=f)
        if noise:
            _add_noise(f, rng, p)
            np.maximum(f, 0, out=f)
        out = cv2.convertScaleAbs(f)  # saturating float -> uint8
    if rng.random() < p.p_gray or (scanner and rng.random() < 0.5):
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    q = int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
    q1 = None
    if rng.random() < p.p_double_jpeg:
        q1 = int(rng.integers(55, 95))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q1])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        r = rng.uniform(0.8, 1.0)  # re-crop/resize between the two saves misaligns the blocks
        if r < 0.97:
            out = cv2.resize(out, (max(16, int(w * r)), max(16, int(h * r))), interpolation=cv2.INTER_LINEAR)
    return out, q, q1


def simulate_capture(doc_bgr: np.ndarray, rng: Rng, strength: str | CaptureParams = "train",
                     background: np.ndarray | None = None) -> bytes:
    """Clean BGR document render -> JPEG bytes of a simulated photo/scan localiser crop.

    ``strength`` is "train", "eval" or a :class:`CaptureParams`; ``background`` is an optional
    BGR scene (desk, table) that shows in background slivers; without it a procedural desk
    texture is used.  Deterministic for a given ``rng`` state.
    """
    out, q, _ = simulate_capture_array(doc_bgr, rng, strength, background)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for a {out.shape} capture")
    return buf.tobytes()
