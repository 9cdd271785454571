"""Sibling document types: one template with one element changed.

Why: real registers hold families of near-identical types (revisions of one form, one issuer's card
in several versions, a count of repeated marks that differs) and that is where a retriever fails:
on real card-sized documents 65 % of the shipped model's top-1 errors land on a sibling.  A
*sibling set* is one template (family, template_seed); member 0 is the template as is, member
k >= 1 the template with one element changed: a block added, removed or moved, a different count
of repeated marks, another title, another colour of one region.  The change is an edit of the
rendered document in relative coordinates, drawn from (family, template_seed, member) alone and
applied to every fill, so a member is a document type of its own whose specimens differ only in
their personal data, at any render scale.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw

from . import text as T
from .families import render_document
from .fonts import get_font, is_bold, list_fonts

Rng = np.random.Generator
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the width and height

EDIT_KINDS = ("add_block", "remove_block", "move_block", "count", "title", "recolour")
P_MOTIF = 0.5          # share of sets whose template carries a row of repeated marks
MARK_SHAPES = ("dot", "square", "star", "triangle", "ring")


def _rng(*parts: object) -> Rng:
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(h, "little"))


@dataclass(frozen=True)
class Motif:
    """A row of small repeated marks (stars on a card, boxes of a form): the element whose count
    tells some real siblings apart."""
    x0: float
    y: float
    size: float      # mark side as a fraction of the image width
    shape: str
    color: tuple[int, int, int]
    count: int


@dataclass(frozen=True)
class Sibling:
    """One member of a sibling set: which edit (None for member 0) and its own random stream."""
    family: str
    template_seed: int
    member: int
    kind: str | None
    motif: Motif | None

    def describe(self) -> dict:
        d: dict = {"family": self.family, "template_seed": self.template_seed, "member": self.member,
                   "edit": self.kind}
        if self.motif is not None:
            d["marks"] = self.motif.count
        return d


def _motif(family: str, template_seed: int) -> Motif | None:
    r = _rng("sibling-motif", family, template_seed)
    if r.random() >= P_MOTIF:
        return None
    size = float(r.uniform(0.022, 0.04))
    count = int(r.integers(3, 7))
    x0 = float(r.uniform(0.04, 0.96 - (count + 4) * size * 1.6))
    dark = r.random() < 0.6
    color = tuple(int(c) for c in (r.integers(0, 90, 3) if dark else r.integers(60, 230, 3)))
    return Motif(x0, float(r.uniform(0.06, 0.94)), size, MARK_SHAPES[int(r.integers(len(MARK_SHAPES)))],
                 color, count)  # type: ignore[arg-type]


MAX_MEMBERS = 12


def sibling_set(family: str, template_seed: int, members: int) -> list[Sibling]:
    """The members 0..members-1 of one sibling set.  With a motif, two members differ from the
    template only in its count (the hardest kind); the others draw distinct edit kinds first.
    Member k is the same whatever ``members`` is (a set of 3 is the start of a set of 6)."""
    if not 1 <= members <= MAX_MEMBERS:
        raise ValueError(f"sibling_set: members must be in [1, {MAX_MEMBERS}], got {members}")
    motif = _motif(family, template_seed)
    r = _rng("sibling-kinds", family, template_seed)
    kinds = [k for k in EDIT_KINDS if k != "count"]
    r.shuffle(kinds)
    plan: list[str] = (["count", "count"] if motif is not None else []) + kinds
    r.shuffle(plan)
    while len(plan) < MAX_MEMBERS - 1:  # more members than kinds: kinds again, with new parameters
        plan.append(kinds[int(r.integers(len(kinds)))])
    out = [Sibling(family, int(template_seed), 0, None, motif)]
    n_count = 0
    for k, kind in enumerate(plan[: members - 1], start=1):
        m = motif
        if kind == "count" and motif is not None:
            n_count += 1
            delta = n_count if (motif.count + template_seed) % 2 else -n_count
            if motif.count + delta < 1:
                delta = n_count
            m = Motif(motif.x0, motif.y, motif.size, motif.shape, motif.color, motif.count + delta)
        out.append(Sibling(family, int(template_seed), k, kind, m))
    return out


def sibling(family: str, template_seed: int, member: int) -> Sibling:
    """Member ``member`` of the template's sibling set."""
    return sibling_set(family, template_seed, member + 1)[member]


def render_sibling(sib: Sibling, fill_seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """A specimen of sibling ``sib`` (BGR uint8): the template's fill, then the member's edit."""
    return _render(sib, fill_seed, scale, _visible_attempt(sib) if sib.kind is not None else 0)


def _render(sib: Sibling, fill_seed: int, scale: float, attempt: int) -> np.ndarray:
    img = render_document(sib.family, sib.template_seed, fill_seed, scale)
    rgb = Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    if sib.motif is not None:
        _draw_marks(rgb, sib.motif)
    if sib.kind is not None:
        EDITS[sib.kind](rgb, _rng("sibling-edit", sib.family, sib.template_seed, sib.member, attempt))
    return cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)


MIN_CHANGED = 0.002   # an edit must change at least this share of the specimen's pixels ...
CHECK_SCALE = 0.35    # ... judged on fill 0 at this scale
ATTEMPTS = 8


@lru_cache(maxsize=4096)
def _visible_attempt(sib: Sibling) -> int:
    """The first of the member's parameter draws whose edit is visible on the specimen: a block
    removed from blank paper or two blank regions swapped would make a type identical to another.
    (A count edit always adds or removes a mark.)"""
    if sib.kind == "count":
        return 0
    base = _render(Sibling(sib.family, sib.template_seed, 0, None, sib.motif), 0, CHECK_SCALE, 0)
    for attempt in range(ATTEMPTS):
        out = _render(sib, 0, CHECK_SCALE, attempt)
        if np.mean(np.abs(out.astype(np.int16) - base).max(axis=2) > 40) >= MIN_CHANGED:
            return attempt
    return ATTEMPTS - 1


# ------------------------------------------------------------------------------------------------
# edits: each draws its parameters from ``r`` alone (never from the image), in relative units
# ------------------------------------------------------------------------------------------------

def _px(img: Image.Image, b: Box) -> tuple[int, int, int, int]:
    w, h = img.size
    return int(b[0] * w), int(b[1] * h), max(int(b[0] * w) + 1, int(b[2] * w)), max(int(b[1] * h) + 1, int(b[3] * h))


def _box(r: Rng, wr: tuple[float, float], hr: tuple[float, float]) -> Box:
    w, h = float(r.uniform(*wr)), float(r.uniform(*hr))
    x, y = float(r.uniform(0.03, 0.97 - w)), float(r.uniform(0.03, 0.97 - h))
    return x, y, x + w, y + h


def _paper(img: Image.Image, b: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """The colour around a box (median of its outline): what a blanked block is painted with."""
    a = np.asarray(img)
    x0, y0, x1, y1 = b
    ring = np.concatenate([a[y0, x0:x1], a[y1 - 1, x0:x1], a[y0:y1, x0], a[y0:y1, x1 - 1]])
    return tuple(int(v) for v in np.median(ring, axis=0))  # type: ignore[return-value]


def _ink(r: Rng) -> tuple[int, int, int]:
    return tuple(int(c) for c in r.integers(0, 110, 3))  # type: ignore[return-value]


def _font(r: Rng, px: int, bold: bool = False):
    fonts = list_fonts("latin")
    pool = [f for f in fonts if is_bold(f) == bold] or fonts
    return get_font(pool[int(r.integers(len(pool)))], max(6, px))


def _add_block(img: Image.Image, r: Rng) -> None:
    """A new block: a framed note with a heading and a few lines, a round stamp or a logo."""
    d = ImageDraw.Draw(img)
    W, H = img.size
    style = int(r.integers(3))
    if style == 0:
        x0, y0, x1, y1 = _px(img, _box(r, (0.16, 0.34), (0.07, 0.16)))
        ink = _ink(r)
        fillc = tuple(int(c) for c in r.integers(200, 256, 3)) if r.random() < 0.5 else None
        d.rectangle((x0, y0, x1, y1), fill=fillc, outline=ink, width=max(1, W // 300))
        fs = max(6, int((y1 - y0) * 0.22))
        d.text((x0 + fs // 2, y0 + fs // 3), T.word(r).upper(), font=_font(r, fs, bold=True), fill=ink)
        fnt = _font(r, int(fs * 0.8))
        for i in range(1, int((y1 - y0) / (fs * 1.2))):
            d.text((x0 + fs // 2, y0 + fs // 3 + int(i * fs * 1.15)), " ".join(T.word(r, cap=False) for _ in range(4)),
                   font=fnt, fill=ink)
    elif style == 1:
        rad = int(min(W, H) * float(r.uniform(0.06, 0.11)))
        cx, cy = int(W * float(r.uniform(0.15, 0.85))), int(H * float(r.uniform(0.15, 0.85)))
        col = (int(r.integers(120, 220)), int(r.integers(0, 60)), int(r.integers(0, 120)))
        wd = max(2, rad // 12)
        d.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), outline=col, width=wd)
        d.ellipse((cx - int(rad * 0.75), cy - int(rad * 0.75), cx + int(rad * 0.75), cy + int(rad * 0.75)),
                  outline=col, width=max(1, wd // 2))
        d.text((cx, cy), T.word(r).upper(), font=_font(r, int(rad * 0.35), bold=True), fill=col, anchor="mm")
    else:
        s = int(min(W, H) * float(r.uniform(0.07, 0.13)))
        x0, y0 = int(W * float(r.uniform(0.03, 0.9)) - s / 2), int(H * float(r.uniform(0.03, 0.9)) - s / 2)
        c1 = tuple(int(c) for c in r.integers(0, 256, 3))
        c2 = tuple(int(c) for c in r.integers(0, 256, 3))
        d.rectangle((x0, y0, x0 + s, y0 + s), fill=c1)
        d.polygon([(x0 + s * 0.5, y0 + s * 0.12), (x0 + s * 0.88, y0 + s * 0.85), (x0 + s * 0.12, y0 + s * 0.85)], fill=c2)


def _remove_block(img: Image.Image, r: Rng) -> None:
    """A block taken away: a region painted over with the paper around it."""
    b = _px(img, _box(r, (0.18, 0.4), (0.08, 0.2)))
    ImageDraw.Draw(img).rectangle(b, fill=_paper(img, b))


def _move_block(img: Image.Image, r: Rng) -> None:
    """Two blocks swapped: the same content in another arrangement."""
    w, h = float(r.uniform(0.18, 0.4)), float(r.uniform(0.08, 0.22))
    for _ in range(20):
        a = _box(r, (w, w), (h, h))
        b = _box(r, (w, w), (h, h))
        if a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]:
            break
    else:
        a, b = (0.03, 0.03, 0.03 + w, 0.03 + h), (0.97 - w, 0.97 - h, 0.97, 0.97)
    pa, pb = _px(img, a), _px(img, b)
    size = (min(pa[2] - pa[0], pb[2] - pb[0]), min(pa[3] - pa[1], pb[3] - pb[1]))
    ca = img.crop((pa[0], pa[1], pa[0] + size[0], pa[1] + size[1]))
    cb = img.crop((pb[0], pb[1], pb[0] + size[0], pb[1] + size[1]))
    img.paste(cb, pa[:2])
    img.paste(ca, pb[:2])


def _title(img: Image.Image, r: Rng) -> None:
    """Another title: a band near the top repainted with other words."""
    y0 = float(r.uniform(0.02, 0.12))
    b = _px(img, (float(r.uniform(0.04, 0.3)), y0, float(r.uniform(0.7, 0.96)), y0 + float(r.uniform(0.04, 0.08))))
    d = ImageDraw.Draw(img)
    d.rectangle(b, fill=_paper(img, b))
    fs = int((b[3] - b[1]) * 0.7)
    words = " ".join(T.word(r) for _ in range(int(r.integers(1, 4))))
    d.text((b[0], (b[1] + b[3]) // 2), words.upper() if r.random() < 0.5 else words,
           font=_font(r, fs, bold=True), fill=_ink(r), anchor="lm")


def _recolour(img: Image.Image, r: Rng) -> None:
    """Another colour version: one region (or, for a third of them, the whole document) hue-shifted."""
    a = np.asarray(img).copy()
    if r.random() < 1 / 3:
        b = (0, 0, a.shape[1], a.shape[0])
    else:
        b = _px(img, _box(r, (0.25, 0.6), (0.15, 0.45)))
    x0, y0, x1, y1 = b
    hsv = cv2.cvtColor(np.ascontiguousarray(a[y0:y1, x0:x1]), cv2.COLOR_RGB2HSV)
    shift = int(r.integers(25, 155))
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
    hsv[..., 1] = np.clip(hsv[..., 1].astype(np.float32) * 1.3 + 60, 0, 255).astype(np.uint8)
    a[y0:y1, x0:x1] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    img.paste(Image.fromarray(a))


def _count(img: Image.Image, r: Rng) -> None:
    """The motif drawn with another count already did the work (see ``sibling_set``)."""


EDITS = {"add_block": _add_block, "remove_block": _remove_block, "move_block": _move_block,
         "count": _count, "title": _title, "recolour": _recolour}


def _draw_marks(img: Image.Image, m: Motif) -> None:
    d = ImageDraw.Draw(img)
    W, H = img.size
    s = max(3.0, m.size * W)
    y = m.y * H
    for i in range(m.count):
        cx, cy = m.x0 * W + s / 2 + i * s * 1.6, y
        box = (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)
        if m.shape == "dot":
            d.ellipse(box, fill=m.color)
        elif m.shape == "ring":
            d.ellipse(box, outline=m.color, width=max(1, int(s / 6)))
        elif m.shape == "square":
            d.rectangle(box, fill=m.color)
        elif m.shape == "triangle":
            d.polygon([(cx, cy - s / 2), (cx + s / 2, cy + s / 2), (cx - s / 2, cy + s / 2)], fill=m.color)
        else:
            pts = []
            for j in range(10):
                ang = -np.pi / 2 + j * np.pi / 5
                rad = s / 2 if j % 2 == 0 else s / 5
                pts.append((cx + rad * np.cos(ang), cy + rad * np.sin(ang)))
            d.polygon(pts, fill=m.color)
