"""Render context shared by layouts: canvas, scale, template style and fill rng.

Why: layouts are written in base pixel units (scale 1.0); `Doc` converts to the
requested scale and carries the two random streams — `t` (template: what the
document type looks like) and `f` (fill: the variable content) — so a layout
can never accidentally let content change the layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import text as T
from .draw import RGB, fill, fit, palette
from .fonts import get_font, is_bold, list_fonts

Rng = np.random.Generator


def _pick(t: Rng, seq: list[str]) -> str:
    return seq[int(t.integers(len(seq)))]


@dataclass
class Style:
    """Template-level typography and colour choices."""
    lang: str
    lang2: str | None
    pal: dict[str, RGB]
    f_title: str
    f_label: str
    f_value: str
    f_mono: str
    f_cjk: str
    f_cjk_bold: str
    upper_labels: bool
    extra: dict = field(default_factory=dict)


def make_style(t: Rng, lang_weights: dict[str, float] | None = None) -> Style:
    """Draw a template style: language (mostly Latin, some CJK), fonts, palette."""
    lw = lang_weights or {"en": 3, "fr": 1, "de": 1, "es": 1, "it": 0.6, "nl": 0.5, "pt": 0.5,
                          "zh": 0.9, "ja": 0.9, "ko": 0.8}
    langs = list(lw)
    p = np.array([lw[k] for k in langs], float)
    lang = langs[int(t.choice(len(langs), p=p / p.sum()))]
    lang2 = None
    if t.random() < 0.45:
        lang2 = "en" if lang != "en" else str(t.choice(["fr", "es", "de"]))
    latin = list_fonts("latin")
    bold = [q for q in latin if is_bold(q)] or latin
    reg = [q for q in latin if not is_bold(q)] or latin
    cjk_lang = lang if T.is_cjk(lang) else "zh"
    cj = list_fonts(cjk_lang)
    cj_b = [q for q in cj if is_bold(q)] or cj
    return Style(
        lang=lang, lang2=lang2, pal=palette(t),
        f_title=_pick(t, bold), f_label=_pick(t, latin), f_value=_pick(t, reg if t.random() < 0.6 else bold),
        f_mono=_pick(t, list_fonts("mono")), f_cjk=_pick(t, cj), f_cjk_bold=_pick(t, cj_b),
        upper_labels=bool(t.random() < 0.5),
    )


class Doc:
    """Canvas in base units. Coordinates/sizes passed to methods are multiplied by `s`."""

    def __init__(self, w: int, h: int, s: float, t: Rng, f: Rng, style: Style):
        self.w, self.h, self.s = w, h, s
        self.W, self.H = max(8, int(round(w * s))), max(8, int(round(h * s)))
        self.t, self.f, self.st = t, f, style
        self.arr = np.empty((self.H, self.W, 3), np.uint8)
        fill(self.arr, style.pal["stock"])
        self.img: Image.Image | None = None
        self.d: ImageDraw.ImageDraw | None = None

    # stage switches -----------------------------------------------------
    def begin_pil(self) -> None:
        self.img = Image.fromarray(self.arr)
        self.d = ImageDraw.Draw(self.img)

    def end_pil(self) -> None:
        assert self.img is not None
        self.arr = np.asarray(self.img).copy()
        self.img, self.d = None, None

    def bgr(self) -> np.ndarray:
        if self.img is not None:
            self.end_pil()
        return cv2.cvtColor(self.arr, cv2.COLOR_RGB2BGR)

    # helpers --------------------------------------------------------------
    def p(self, v: float) -> int:
        return int(round(v * self.s))

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return self.p(x0), self.p(y0), self.p(x1), self.p(y1)

    def font(self, path: str, size: float) -> ImageFont.FreeTypeFont:
        return get_font(path, max(6, int(round(size * self.s))))

    def font_for(self, txt: str, role: str, size: float) -> ImageFont.FreeTypeFont:
        """Pick the CJK face if text needs it, else the role's Latin face."""
        st = self.st
        if any(ord(c) > 0x2E80 for c in txt):
            return self.font(st.f_cjk_bold if role == "title" else st.f_cjk, size)
        return self.font({"title": st.f_title, "label": st.f_label, "value": st.f_value, "mono": st.f_mono}[role], size)

    def text(self, x: float, y: float, txt: str, size: float, role: str = "value", fill: RGB | None = None,
             anchor: str = "la", maxw: float = 0) -> float:
        """Draw text; returns its width in base units."""
        if not txt:
            return 0.0
        fnt = self.font_for(txt, role, size)
        if maxw:
            txt = fit(fnt, txt, maxw * self.s)
        col = fill if fill is not None else self.st.pal["ink"]
        assert self.d is not None
        self.d.text((x * self.s, y * self.s), txt, font=fnt, fill=col, anchor=anchor)
        return fnt.getlength(txt) / self.s

    def rect(self, x0, y0, x1, y1, fill=None, outline=None, width: float = 1, r: float = 0) -> None:
        assert self.d is not None
        b = self.box(x0, y0, x1, y1)
        wd = max(1, self.p(width)) if outline is not None else 0
        if r > 0:
            self.d.rounded_rectangle(b, radius=self.p(r), fill=fill, outline=outline, width=wd)
        else:
            self.d.rectangle(b, fill=fill, outline=outline, width=wd)

    def line(self, x0, y0, x1, y1, fill, width: float = 1) -> None:
        assert self.d is not None
        self.d.line([self.p(x0), self.p(y0), self.p(x1), self.p(y1)], fill=fill, width=max(1, self.p(width)))

    def lab(self, key: str, lang: str | None = None) -> str:
        """Label text for `key` in the template language (optionally bilingual)."""
        st = self.st
        l1 = T.label(key, lang or st.lang)
        if st.upper_labels and not T.is_cjk(lang or st.lang):
            l1 = l1.upper()
        if lang is None and st.lang2 and st.extra.get("bilingual_labels", True):
            l2 = T.label(key, st.lang2)
            if l2 != l1 and l2.upper() != l1:
                l1 = f"{l1} / {l2.upper() if st.upper_labels else l2}"
        return l1
