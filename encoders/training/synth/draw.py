"""Drawing primitives shared by all layouts (numpy/cv2 backgrounds, PIL elements).

Why: every document family is a combination of the same visual ingredients
(security backgrounds, portraits, stamps, codes, MRZ, signatures); keeping them
here lets layouts stay short and lets template vs fill randomness be explicit:
functions take the rng that should drive them.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import qrcode
from PIL import Image, ImageDraw, ImageFont

from .fonts import get_font

Rng = np.random.Generator
RGB = tuple[int, int, int]


# --------------------------------------------------------------------- colours
def hsv(h: float, s: float, v: float) -> RGB:
    """h in [0,1), s,v in [0,1] -> RGB ints."""
    import colorsys
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(1, max(0, s)), min(1, max(0, v)))
    return int(r * 255), int(g * 255), int(b * 255)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(a[i] * (1 - t) + b[i] * t)) for i in range(3))  # type: ignore[return-value]


def palette(t: Rng) -> dict[str, RGB]:
    """Template colour scheme: a primary hue with stock, accent and ink colours."""
    h = float(t.random())
    h2 = (h + float(t.choice([0.0, 0.08, 0.5, 0.33, -0.1]))) % 1
    sat = float(t.uniform(0.35, 0.9))
    return {
        "primary": hsv(h, sat, float(t.uniform(0.35, 0.75))),
        "accent": hsv(h2, float(t.uniform(0.4, 0.9)), float(t.uniform(0.5, 0.9))),
        "stock": hsv(h, float(t.uniform(0.03, 0.25)), float(t.uniform(0.88, 0.99))),
        "stock2": hsv(h2, float(t.uniform(0.05, 0.3)), float(t.uniform(0.85, 0.98))),
        "pattern": hsv(h, float(t.uniform(0.2, 0.6)), float(t.uniform(0.7, 0.9))),
        "label": hsv(h, float(t.uniform(0.3, 0.9)), float(t.uniform(0.25, 0.55))),
        "ink": hsv(h, float(t.uniform(0, 0.3)), float(t.uniform(0.02, 0.18))),
    }


# ------------------------------------------------------------ background stage
def fill(arr: np.ndarray, col: RGB) -> None:
    """Fast solid fill (broadcasting a 3-vector over HxWx3 is ~10x slower)."""
    arr.reshape(arr.shape[0], -1)[:] = np.tile(np.asarray(col, np.uint8), arr.shape[1])


def gradient(arr: np.ndarray, c1: RGB, c2: RGB, angle: float) -> None:
    """Linear two-colour gradient (computed on a small grid, then resized: it is linear anyway)."""
    h, w = arr.shape[:2]
    gh, gw = max(2, min(h, 48)), max(2, min(w, 48))
    ys, xs = np.linspace(0, 1, gh, dtype=np.float32)[:, None], np.linspace(0, 1, gw, dtype=np.float32)[None, :]
    g = xs * math.cos(angle) * (w / max(h, w)) + ys * math.sin(angle) * (h / max(h, w))
    g = (g - g.min()) / max(1e-6, float(g.max() - g.min()))
    a, b = np.array(c1, np.float32), np.array(c2, np.float32)
    small = np.clip(a + (b - a) * g[..., None], 0, 255).astype(np.uint8)
    arr[:] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def guilloche(arr: np.ndarray, t: Rng, color: RGB, box: tuple[int, int, int, int], s: float,
              kind: str | None = None) -> None:
    """Security background made of families of thin sinusoid curves (template-driven)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    kind = kind or str(t.choice(["waves", "rosette", "mesh", "lines"]))
    th = 1
    polys: list[np.ndarray] = []
    if kind in ("waves", "mesh"):
        n = int(t.integers(12, 40))
        amp = float(t.uniform(0.02, 0.12)) * h
        lam = float(t.uniform(0.15, 0.6)) * w
        ph = float(t.uniform(0, 6.28))
        xs = np.linspace(x0, x1, max(40, w // 6))
        for k in range(n):
            yc = y0 + (k + 0.5) * h / n
            ys = yc + amp * np.sin(2 * np.pi * (xs - x0) / lam + ph + k * 0.35) * np.cos((xs - x0) / w * 3 + k * 0.2)
            polys.append(np.stack([xs, ys], 1))
        if kind == "mesh":
            for k in range(n):
                yc = y0 + (k + 0.5) * h / n
                ys = yc + amp * np.sin(2 * np.pi * (xs - x0) / lam + ph + np.pi + k * 0.35)
                polys.append(np.stack([xs, ys], 1))
    elif kind == "rosette":
        cx = x0 + float(t.uniform(0.2, 0.8)) * w
        cy = y0 + float(t.uniform(0.2, 0.8)) * h
        R = float(t.uniform(0.3, 0.7)) * min(w, h)
        m = int(t.integers(5, 19))
        a = float(t.uniform(0.05, 0.25))
        n = int(t.integers(8, 24))
        th_ = np.linspace(0, 2 * np.pi, 720)
        for k in range(n):
            r = R * (0.35 + 0.65 * k / n) * (1 + a * np.sin(m * th_ + k * 0.4))
            polys.append(np.stack([cx + r * np.cos(th_), cy + r * np.sin(th_)], 1))
    else:  # fine oblique lines
        n = int(t.integers(40, 120))
        ang = float(t.uniform(-1, 1))
        for k in range(n):
            xa = x0 + (k / n) * (w + h) - h
            polys.append(np.array([[xa, y1], [xa + h * (1 + ang * 0.3), y0]]))
    pts = [np.round(p).astype(np.int32).reshape(-1, 1, 2) for p in polys]
    cv2.polylines(arr, pts, False, color, max(1, int(round(th * s))), cv2.LINE_AA)


def dots(arr: np.ndarray, t: Rng, color: RGB, s: float) -> None:
    h, w = arr.shape[:2]
    step = max(4, int(t.integers(10, 24) * s))
    sub = arr[step // 2::step, step // 2::step]
    sub[:] = (sub.astype(np.float32) * 0.6 + np.array(color, np.float32) * 0.4).astype(np.uint8)


def noise_texture(arr: np.ndarray, seed: int, strength: float) -> None:
    """Paper/plastic texture: deterministic low-frequency noise (uint8 saturating ops for speed)."""
    r = np.random.default_rng(seed)
    h, w = arr.shape[:2]
    small = r.normal(0, strength, size=(max(2, h // 8), max(2, w // 8))).astype(np.float32)
    pos = cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    neg = cv2.resize(np.clip(-small, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    pos, neg = cv2.cvtColor(pos, cv2.COLOR_GRAY2RGB), cv2.cvtColor(neg, cv2.COLOR_GRAY2RGB)
    arr[:] = cv2.subtract(cv2.add(arr, pos), neg)


# ----------------------------------------------------------------- PIL stage
def fit(font: ImageFont.FreeTypeFont, text: str, maxw: float) -> str:
    if maxw <= 0 or font.getlength(text) <= maxw:
        return text
    while text and font.getlength(text + "…") > maxw:
        text = text[:-1]
    return text


def rounded_rect(d: ImageDraw.ImageDraw, box, r: float, fill=None, outline=None, width: int = 1) -> None:
    d.rounded_rectangle([int(v) for v in box], radius=int(r), fill=fill, outline=outline, width=width)


def portrait(img: Image.Image, box: tuple[int, int, int, int], f: Rng, style: str, bg: RGB) -> None:
    """Abstract face-like placeholder (ellipses), never a real face; clipped to `box`."""
    x0, y0, x1, y1 = [int(v) for v in box]
    w, h = max(2, x1 - x0), max(2, y1 - y0)
    sub = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(sub)
    skin = hsv(float(f.uniform(0.03, 0.1)), float(f.uniform(0.2, 0.55)), float(f.uniform(0.45, 0.9)))
    hair = hsv(float(f.uniform(0.02, 0.12)), float(f.uniform(0.2, 0.7)), float(f.uniform(0.05, 0.6)))
    cloth = hsv(float(f.random()), float(f.uniform(0.1, 0.7)), float(f.uniform(0.15, 0.7)))
    if style == "gray":
        gray = lambda c: (int(sum(c) / 3),) * 3  # noqa: E731
        skin, hair, cloth = gray(skin), gray(hair), gray(cloth)
    cx = w * f.uniform(0.46, 0.54)
    hw, hh = w * f.uniform(0.2, 0.26), h * f.uniform(0.2, 0.25)
    cy = h * f.uniform(0.38, 0.44)
    sh = w * f.uniform(0.42, 0.5)
    d.ellipse([cx - sh, cy + hh * 1.25, cx + sh, cy + hh * 1.25 + h * 0.6], fill=cloth)
    d.rectangle([cx - hw * 0.38, cy + hh * 0.5, cx + hw * 0.38, cy + hh * 1.45], fill=skin)
    hs = f.uniform(1.0, 1.2)
    d.ellipse([cx - hw * 1.1 * hs, cy - hh * 1.18, cx + hw * 1.1 * hs, cy + hh * (0.2 + 0.7 * f.random())], fill=hair)
    d.ellipse([cx - hw, cy - hh, cx + hw, cy + hh], fill=skin)
    d.chord([cx - hw * 1.02, cy - hh * 1.1, cx + hw * 1.02, cy + hh * 0.2], 180, 360, fill=hair)
    e = mix(skin, (20, 20, 20), 0.7)
    ey = cy - hh * 0.05
    for sx in (-1, 1):
        ex = cx + sx * hw * 0.4
        d.ellipse([ex - hw * 0.12, ey - hh * 0.05, ex + hw * 0.12, ey + hh * 0.06], fill=e)
    d.line([cx, ey + hh * 0.1, cx - hw * 0.08, ey + hh * 0.35], fill=mix(skin, (0, 0, 0), 0.3), width=max(1, int(w / 90)))
    d.line([cx - hw * 0.3, cy + hh * 0.55, cx + hw * 0.3, cy + hh * 0.55], fill=mix(skin, (120, 40, 40), 0.5),
           width=max(1, int(w / 60)))
    img.paste(sub, (x0, y0))


def emblem(d: ImageDraw.ImageDraw, c: tuple[float, float], r: float, t: Rng, col: RGB, col2: RGB) -> None:
    """Geometric logo/seal (template-driven)."""
    cx, cy = c
    kind = int(t.integers(0, 6))
    lw = max(1, int(r / 12))
    if kind == 0:  # star in circle
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=col, width=lw)
        n = int(t.integers(5, 9))
        pts = []
        for i in range(2 * n):
            rr = r * (0.8 if i % 2 == 0 else 0.35)
            a = math.pi * i / n - math.pi / 2
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        d.polygon(pts, fill=col2)
    elif kind == 1:  # shield
        pts = [(cx - r * 0.8, cy - r), (cx + r * 0.8, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
        d.polygon(pts, fill=col, outline=col2)
        d.line([cx, cy - r, cx, cy + r * 0.9], fill=col2, width=lw * 2)
        d.line([cx - r * 0.8, cy - r * 0.3, cx + r * 0.8, cy - r * 0.3], fill=col2, width=lw * 2)
    elif kind == 2:  # concentric rings
        for k in range(4):
            rr = r * (1 - k * 0.22)
            d.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], outline=col if k % 2 == 0 else col2, width=lw * 2)
    elif kind == 3:  # stylised initial block
        d.rounded_rectangle([cx - r, cy - r, cx + r, cy + r], radius=int(r * 0.3), fill=col)
        d.polygon([(cx - r * 0.5, cy + r * 0.6), (cx, cy - r * 0.6), (cx + r * 0.5, cy + r * 0.6)], fill=col2)
    elif kind == 4:  # sun rays
        n = int(t.integers(8, 20))
        for i in range(n):
            a = 2 * math.pi * i / n
            d.line([cx + r * 0.45 * math.cos(a), cy + r * 0.45 * math.sin(a), cx + r * math.cos(a), cy + r * math.sin(a)],
                   fill=col, width=lw * 2)
        d.ellipse([cx - r * 0.35, cy - r * 0.35, cx + r * 0.35, cy + r * 0.35], fill=col2)
    else:  # three bars / wave logo
        for k in range(3):
            yy = cy - r * 0.7 + k * r * 0.6
            d.rounded_rectangle([cx - r, yy, cx + r * (1 - 0.3 * k), yy + r * 0.4], radius=int(r * 0.2),
                                fill=col if k != 1 else col2)


def stamp(img: Image.Image, c: tuple[float, float], r: float, texts: list[str], font_path: str, col: RGB,
          angle: float, kind: str, alpha: int = 170) -> None:
    """Rubber stamp (circle or rectangle with text), rotated and alpha-blended."""
    S = int(r * 2.4)
    st = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(st)
    cc = S / 2
    ca = col + (alpha,)
    lw = max(2, int(r / 18))
    if kind == "circle":
        d.ellipse([cc - r, cc - r, cc + r, cc + r], outline=ca, width=lw)
        d.ellipse([cc - r * 0.72, cc - r * 0.72, cc + r * 0.72, cc + r * 0.72], outline=ca, width=max(1, lw // 2))
        f = get_font(font_path, int(r * 0.17))
        txt = (texts[0] + " • ") * 1
        n = len(txt)
        for i, ch in enumerate(txt):
            a = -math.pi / 2 + 2 * math.pi * i / max(n, 1)
            d.text((cc + r * 0.86 * math.cos(a), cc + r * 0.86 * math.sin(a)), ch, font=f, fill=ca, anchor="mm")
        if len(texts) > 1:
            f2 = get_font(font_path, int(r * 0.24))
            d.text((cc, cc), fit(f2, texts[1], r * 1.3), font=f2, fill=ca, anchor="mm")
    else:
        bw, bh = r * 1.1, r * 0.5
        d.rectangle([cc - bw, cc - bh, cc + bw, cc + bh], outline=ca, width=lw)
        f = get_font(font_path, int(r * 0.3))
        d.text((cc, cc - bh * 0.35), fit(f, texts[0], bw * 1.9), font=f, fill=ca, anchor="mm")
        if len(texts) > 1:
            f2 = get_font(font_path, int(r * 0.22))
            d.text((cc, cc + bh * 0.45), fit(f2, texts[1], bw * 1.9), font=f2, fill=ca, anchor="mm")
    st = st.rotate(angle, resample=Image.BILINEAR)
    img.alpha_composite(st, (int(c[0] - S / 2), int(c[1] - S / 2))) if img.mode == "RGBA" else \
        img.paste(st, (int(c[0] - S / 2), int(c[1] - S / 2)), st)


def signature(d: ImageDraw.ImageDraw, box, f: Rng, col: RGB, width: int) -> None:
    """Random smooth scribble (Bezier chain) inside box."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    n = int(f.integers(3, 7))
    xs = np.sort(f.uniform(0, 1, n * 3 + 1)) * w * 0.9 + x0 + w * 0.05
    ys = f.uniform(0.15, 0.85, n * 3 + 1) * h + y0
    tt = np.linspace(0, 1, 14)[:, None]
    pts = []
    for i in range(n):
        p = np.stack([xs[3 * i:3 * i + 4], ys[3 * i:3 * i + 4]], 1)
        b = ((1 - tt) ** 3) * p[0] + 3 * ((1 - tt) ** 2) * tt * p[1] + 3 * (1 - tt) * tt ** 2 * p[2] + tt ** 3 * p[3]
        pts.extend(map(tuple, b))
    d.line(pts, fill=col, width=width, joint="curve")
    if f.random() < 0.6:
        yy = y0 + h * f.uniform(0.6, 0.9)
        d.line([(x0 + w * f.uniform(0, 0.3), yy), (x0 + w * f.uniform(0.6, 1), yy + h * f.uniform(-0.1, 0.1))],
               fill=col, width=width)


def barcode(d: ImageDraw.ImageDraw, box, f: Rng, col: RGB = (0, 0, 0), vertical: bool = False) -> None:
    """Code128-looking bars (random module widths from the fill rng)."""
    x0, y0, x1, y1 = [float(v) for v in box]
    L = (y1 - y0) if vertical else (x1 - x0)
    widths = f.integers(1, 5, size=int(L / 2.2))
    tot = widths.sum()
    u = L / tot
    pos = 0.0
    for i, wv in enumerate(widths):
        if i % 2 == 0:
            a, b = pos, pos + wv * u
            if vertical:
                d.rectangle([x0, y0 + a, x1, y0 + b - 0.01], fill=col)
            else:
                d.rectangle([x0 + a, y0, x0 + b - 0.01, y1], fill=col)
        pos += wv * u


def qr(img: Image.Image, box, payload: str, col: RGB = (0, 0, 0), bg: RGB = (255, 255, 255)) -> None:
    q = qrcode.QRCode(border=1, error_correction=qrcode.constants.ERROR_CORRECT_L)
    q.add_data(payload)
    q.make(fit=True)
    m = np.array(q.get_matrix(), dtype=bool)
    x0, y0, x1, y1 = [int(v) for v in box]
    side = min(x1 - x0, y1 - y0)
    a = np.where(m[..., None], np.array(col, np.uint8), np.array(bg, np.uint8))
    im = Image.fromarray(a).resize((side, side), Image.NEAREST)
    img.paste(im, (x0, y0))


def pdf417(d: ImageDraw.ImageDraw, box, f: Rng) -> None:
    """PDF417-like stacked barcode (rows of random bars)."""
    x0, y0, x1, y1 = box
    rows = int(f.integers(8, 16)) if False else 12
    rh = (y1 - y0) / rows
    for i in range(rows):
        barcode(d, (x0, y0 + i * rh, x1, y0 + (i + 1) * rh), f)


def chip(d: ImageDraw.ImageDraw, box, t_gold: RGB) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    d.rounded_rectangle(box, radius=int(min(w, h) * 0.18), fill=t_gold, outline=mix(t_gold, (60, 50, 20), 0.5), width=2)
    c = mix(t_gold, (60, 50, 20), 0.45)
    d.line([x0, y0 + h / 3, x1, y0 + h / 3], fill=c, width=2)
    d.line([x0, y0 + 2 * h / 3, x1, y0 + 2 * h / 3], fill=c, width=2)
    d.line([x0 + w / 2, y0, x0 + w / 2, y0 + h / 3], fill=c, width=2)
    d.line([x0 + w / 2, y0 + 2 * h / 3, x0 + w / 2, y1], fill=c, width=2)
    d.rounded_rectangle([x0 + w * 0.3, y0 + h / 3, x0 + w * 0.7, y0 + 2 * h / 3], radius=3, outline=c, width=2)


# ------------------------------------------------------------------ MRZ
def _mrz_check(s: str) -> str:
    vals = {**{str(i): i for i in range(10)}, **{chr(65 + i): 10 + i for i in range(26)}, "<": 0}
    w = [7, 3, 1]
    return str(sum(vals.get(ch, 0) * w[i % 3] for i, ch in enumerate(s)) % 10)


def mrz_lines(f: Rng, kind: str, surname: str, given: str, country: str, number: str) -> list[str]:
    """TD1 (3x30) or TD3 (2x44) machine readable zone for fictional data."""
    def clean(x: str) -> str:
        return "".join(ch if ch.isascii() and ch.isalpha() else "<" for ch in x.upper())
    if not surname.isascii():
        surname, given = "".join(chr(65 + int(i)) for i in f.integers(0, 26, 6)), "".join(chr(65 + int(i)) for i in f.integers(0, 26, 5))
    dob = "".join(str(int(v)) for v in f.integers(0, 10, 6))
    exp = "".join(str(int(v)) for v in f.integers(0, 10, 6))
    sex = str(f.choice(["M", "F", "<"]))
    num = "".join(ch for ch in number.upper() if ch.isascii() and ch.isalnum()) + "<" * 9
    num = num[:9]
    if kind == "td3":
        l1 = ("P<" + country + clean(surname) + "<<" + clean(given)).ljust(44, "<")[:44]
        l2 = num + _mrz_check(num) + country + dob + _mrz_check(dob) + sex + exp + _mrz_check(exp)
        l2 = (l2 + "<" * 14 + "0")[:42]
        l2 = l2 + _mrz_check(l2) + "<"
        return [l1, l2[:44]]
    l1 = ("ID" + country + num + _mrz_check(num)).ljust(30, "<")[:30]
    l2 = (dob + _mrz_check(dob) + sex + exp + _mrz_check(exp) + country).ljust(29, "<")[:29]
    l2 += _mrz_check(l2)
    l3 = (clean(surname) + "<<" + clean(given)).ljust(30, "<")[:30]
    return [l1, l2, l3]


# --------------------------------------------------------- final-stage overlays
def hologram(arr: np.ndarray, box, t: Rng) -> None:
    """Iridescent translucent patch (rainbow gradient, alpha-blended) at a template position."""
    x0, y0, x1, y1 = [int(v) for v in box]
    H, W = arr.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if x1 <= x0 or y1 <= y0:
        return
    h, w = y1 - y0, x1 - x0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ph = (xx / max(w, 1) + yy / max(h, 1)) * 3.0
    rain = np.stack([np.sin(ph * 2.1) , np.sin(ph * 2.1 + 2.1), np.sin(ph * 2.1 + 4.2)], -1) * 60 + 190
    cx, cy = w / 2, h / 2
    m = np.clip(1 - (((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2), 0, 1) * 0.35
    reg = arr[y0:y1, x0:x1].astype(np.float32)
    arr[y0:y1, x0:x1] = (reg * (1 - m[..., None]) + rain * m[..., None]).astype(np.uint8)
