"""Odd-shaped documents: receipts, tickets/boarding passes, shipping labels, cheques, vouchers.

Why: non-card, non-A4 aspect ratios are common in real capture streams and
must be represented in training and evaluation.
"""
from __future__ import annotations

import numpy as np

from . import draw as D
from . import text as T
from .doc import Doc, make_style
from .pages import PAGE_LANGS, Page

Rng = np.random.Generator


def render_receipt(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    st = make_style(t, PAGE_LANGS)
    st.extra["bilingual_labels"] = False
    w = int(t.integers(520, 640))
    h = int(t.integers(1350, 1900))
    doc = Doc(w, h, s, t, f, st)
    D.fill(doc.arr, D.mix((250, 250, 246), st.pal["stock"], float(t.uniform(0, 0.3))))
    doc.begin_pil()
    P = Page(doc, family)
    mono = t.random() < 0.75
    role = "mono" if mono else "value"
    sz = float(t.uniform(19, 24))
    lh = sz * float(t.uniform(1.25, 1.5))
    m = float(t.uniform(24, 45))
    y = float(t.uniform(30, 70))
    assert doc.d is not None and doc.img is not None
    if t.random() < 0.6:
        D.emblem(doc.d, (doc.p(w / 2), doc.p(y + 45)), doc.p(42), t, (30, 30, 30), (110, 110, 110))
        y += 105
    doc.text(w / 2, y, P.org, sz * 1.5, "title", (20, 20, 20), "ma", maxw=w - 2 * m); y += sz * 2
    for ln in P.org_addr:
        doc.text(w / 2, y, ln, sz * 0.9, role, (30, 30, 30), "ma", maxw=w - 2 * m); y += lh
    doc.text(w / 2, y, P.title, sz * 1.1, "title", (20, 20, 20), "ma", maxw=w - 2 * m); y += lh * 1.5
    sep = str(t.choice(["-", "=", "*", "."]))
    ncols = int((w - 2 * m) / (doc.font_for("0", role, sz).getlength("0") / s)) if mono else 40

    def rule() -> None:
        nonlocal y
        doc.text(w / 2, y, sep * ncols, sz, "mono", (40, 40, 40), "ma", maxw=w - 2 * m); y += lh

    doc.text(m, y, f"{P.date()}  {f.integers(0, 24):02d}:{f.integers(0, 60):02d}", sz * 0.9, role, (30, 30, 30))
    doc.text(w - m, y, f"#{T.digits(f, 6)}", sz * 0.9, role, (30, 30, 30), "ra"); y += lh
    rule()
    nitems = max(2, int(t.integers(4, 13)) + int(f.integers(-2, 3)))
    for _ in range(nitems):
        name = T.sentence(f, P.lang, int(f.integers(1, 3)))[:-1][:22]
        doc.text(m, y, name, sz, role, (25, 25, 25), maxw=w * 0.62)
        doc.text(w - m, y, P.money(0.5, 80), sz, role, (25, 25, 25), "ra"); y += lh
        if y > h - 420:
            break
    rule()
    for k in ("subtotal", "tax", "total"):
        big = k == "total"
        doc.text(m, y, P.lab(k).upper(), sz * (1.3 if big else 1), "title" if big else role, (20, 20, 20))
        doc.text(w - m, y, f"{P.money(5, 300)} {P.cur}", sz * (1.3 if big else 1), "title" if big else role, (20, 20, 20), "ra")
        y += lh * (1.4 if big else 1)
    rule()
    doc.text(w / 2, y, T.sentence(t, P.lang, 4), sz * 0.9, role, (30, 30, 30), "ma", maxw=w - 2 * m); y += lh * 1.5
    code = str(t.choice(["barcode", "qr", "none"]))
    if code == "barcode":
        D.barcode(doc.d, doc.box(m + 30, y, w - m - 30, y + 90), f); y += 110
    elif code == "qr":
        D.qr(doc.img, doc.box(w / 2 - 80, y, w / 2 + 80, y + 160), T.alnum(f, 50)); y += 180
    doc.end_pil()
    # real receipts are cut after the content: crop the paper roll
    return doc.bgr()[: min(doc.H, doc.p(y + float(t.uniform(40, 120))))]


def render_pass(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    """Boarding pass / ticket: wide, main part + tear-off stub, big codes."""
    st = make_style(t)
    st.extra["bilingual_labels"] = bool(t.random() < 0.5)
    w, h = (1500, 600) if family == "boarding_pass" else (int(t.integers(1200, 1500)), int(t.integers(480, 620)))
    doc = Doc(w, h, s, t, f, st)
    pal = st.pal
    D.gradient(doc.arr, pal["stock"], D.mix(pal["stock2"], (255, 255, 255), 0.4), float(t.uniform(0, 6.28)))
    if t.random() < 0.5:
        D.guilloche(doc.arr, t, D.mix(pal["pattern"], pal["stock"], 0.5), (0, 0, doc.W, doc.H), s)
    doc.begin_pil()
    P = Page(doc, "boarding_pass" if family == "boarding_pass" else "company")
    stub_x = w * float(t.uniform(0.68, 0.78))
    bh = float(t.uniform(80, 120))
    doc.rect(0, 0, w, bh, fill=pal["primary"])
    assert doc.d is not None and doc.img is not None
    D.emblem(doc.d, (doc.p(60), doc.p(bh / 2)), doc.p(bh * 0.32), t, (255, 255, 255), pal["accent"])
    doc.text(110, bh / 2, P.org, 30, "title", (255, 255, 255), "lm", maxw=stub_x - 400)
    doc.text(stub_x - 30, bh / 2, T.title(family, st.lang, t), 26, "title", (255, 255, 255), "rm", maxw=360)
    for yy in np.arange(0, h, 22):
        doc.line(stub_x, yy, stub_x, yy + 11, pal["label"], 2)
    y = bh + 30
    if family == "boarding_pass":
        a, b = T.letters(f, 3), T.letters(f, 3)
        doc.text(60, y, a, 80, "title", pal["ink"])
        doc.line(340, y + 45, 440, y + 45, pal["accent"], 6)
        assert doc.d is not None
        doc.d.polygon([(doc.p(440), doc.p(y + 30)), (doc.p(465), doc.p(y + 45)), (doc.p(440), doc.p(y + 60))], fill=pal["accent"])
        doc.text(480, y, b, 80, "title", pal["ink"])
        doc.text(60, y + 95, T.city(f, st.lang), 18, "label", pal["label"])
        doc.text(480, y + 95, T.city(f, st.lang), 18, "label", pal["label"])
        keys = ["name", "flight", "date", "gate", "seat", "class"]
    else:
        doc.text(60, y, T.sentence(f, st.lang, 3)[:-1].upper(), 44, "title", pal["ink"], maxw=stub_x - 120)
        keys = ["name", "date", "seat", "class", "reference"]
    y2 = y + 140
    cw = (stub_x - 100) / 3
    for i, k in enumerate(keys):
        x, yy = 60 + (i % 3) * cw, y2 + (i // 3) * 80
        doc.text(x, yy, doc.lab(k), 14, "label", pal["label"], maxw=cw - 10)
        v = {"name": T.full_name(f, st.lang).upper(), "flight": T.letters(f, 2) + T.digits(f, 4), "date": T.date(f, "dMy", 2024, 2027),
             "gate": T.letters(f, 1) + str(f.integers(1, 60)), "seat": str(f.integers(1, 40)) + T.letters(f, 1),
             "class": str(f.choice(["Y", "J", "ECONOMY", "2", "1"])), "reference": T.alnum(f, 6)}[k]
        doc.text(x, yy + 20, v, 28, "value", pal["ink"], maxw=cw - 10)
    code = str(t.choice(["barcode", "qr", "pdf417"]))
    if code == "qr":
        D.qr(doc.img, doc.box(stub_x + 40, h - 240, stub_x + 240, h - 40), T.alnum(f, 80))
    elif code == "pdf417":
        D.pdf417(doc.d, doc.box(60, h - 110, 560, h - 30), f)
    else:
        D.barcode(doc.d, doc.box(60, h - 100, 560, h - 30), f)
    sx = stub_x + 30
    for i, k in enumerate(keys[:4]):
        doc.text(sx, bh + 20 + i * 62, doc.lab(k), 12, "label", pal["label"], maxw=w - sx - 20)
        doc.text(sx, bh + 38 + i * 62, T.alnum(f, int(f.integers(3, 9))), 22, "value", maxw=w - sx - 20)
    doc.end_pil()
    return doc.bgr()


def render_shipping_label(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    st = make_style(t, PAGE_LANGS)
    st.extra["bilingual_labels"] = False
    w, h = 800, 1200
    doc = Doc(w, h, s, t, f, st)
    D.fill(doc.arr, (252, 252, 250))
    doc.begin_pil()
    P = Page(doc, family)
    k = (20, 20, 20)
    lw = float(t.uniform(2, 5))
    assert doc.d is not None and doc.img is not None
    ys = sorted(t.uniform(0.1, 0.9, 4) * h)
    cuts = [0.0] + [float(v) for v in ys] + [float(h)]
    doc.rect(10, 10, w - 10, h - 10, outline=k, width=lw)
    for c in cuts[1:-1]:
        doc.line(10, c, w - 10, c, k, lw)
    parts = ["from", "to", "code", "barcode", "meta"]
    order = [parts[i] for i in t.permutation(5)]
    for (a, b), part in zip(zip(cuts[:-1], cuts[1:]), order):
        hh = b - a
        if part in ("from", "to"):
            big = part == "to"
            sz = min(34 if big else 20, hh / 6)
            doc.text(30, a + 12, P.lab(part).upper(), sz * 0.7, "title", k)
            lines = [T.full_name(f, P.lang)] + T.address(f, P.lang)
            for i, ln in enumerate(lines):
                doc.text(30, a + 12 + sz * 1.1 + i * sz * 1.25, ln, sz, "value", k, maxw=w - 60)
        elif part == "code":
            doc.text(30, a + hh / 2, T.letters(f, 2) + " " + T.digits(f, 3), min(110, hh * 0.7), "title", k, "lm")
            doc.text(w - 30, a + hh / 2, P.title, min(40, hh * 0.3), "title", k, "rm", maxw=w * 0.4)
        elif part == "barcode":
            bh = max(20, hh - 60)
            D.barcode(doc.d, doc.box(60, a + 15, w - 60, a + 15 + bh), f)
            doc.text(w / 2, a + 20 + bh, " ".join(T.digits(f, 4) for _ in range(4)), min(22, hh * 0.18), "mono", k, "ma")
        else:
            qs = min(hh - 20, 200)
            if qs > 60:
                D.qr(doc.img, doc.box(w - 30 - qs, a + 10, w - 30, a + 10 + qs), T.alnum(f, 40))
            for i, kk in enumerate(["weight", "date", "reference"]):
                if 12 + i * 30 + 24 < hh:
                    doc.text(30, a + 12 + i * 30, f"{P.lab(kk)}: {T.alnum(f, 7)}", min(20, hh / 5), "value", k, maxw=w - qs - 80)
    doc.end_pil()
    return doc.bgr()


def render_cheque(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    st = make_style(t, PAGE_LANGS)
    st.extra["bilingual_labels"] = False
    w, h = 1400, 620
    doc = Doc(w, h, s, t, f, st)
    pal = st.pal
    D.gradient(doc.arr, D.mix(pal["stock"], (255, 255, 255), 0.3), pal["stock2"], float(t.uniform(0, 6.28)))
    D.guilloche(doc.arr, t, D.mix(pal["pattern"], pal["stock"], 0.5), (0, 0, doc.W, doc.H), s, "waves")
    doc.begin_pil()
    P = Page(doc, "bank_statement")
    assert doc.d is not None
    D.emblem(doc.d, (doc.p(80), doc.p(80)), doc.p(40), t, pal["primary"], pal["accent"])
    doc.text(140, 60, P.org, 30, "title", pal["primary"], maxw=600)
    doc.text(140, 98, P.org_addr[1], 15, "label", pal["label"])
    doc.text(w - 60, 50, f"No. {T.digits(f, 6)}", 22, "mono", pal["ink"], "ra")
    doc.text(w - 400, 120, f"{P.lab('date')}:", 18, "label", pal["label"])
    doc.text(w - 320, 115, P.date(), 24, "value", (20, 30, 110))
    doc.line(w - 320, 145, w - 60, 145, pal["ink"], 1)
    doc.text(60, 205, P.lab("pay_to"), 18, "label", pal["label"])
    doc.text(330, 195, T.full_name(f, P.lang), 30, "value", (20, 30, 110), maxw=680)
    doc.line(320, 235, w - 380, 235, pal["ink"], 1)
    doc.rect(w - 340, 180, w - 60, 240, fill=(255, 255, 255), outline=pal["ink"], width=2)
    doc.text(w - 330, 210, f"{P.cur} {P.money(10, 9000)}", 28, "value", (20, 30, 110), "lm")
    doc.text(60, 280, T.sentence(f, P.lang, 5)[:-1], 26, "value", (20, 30, 110), maxw=w - 200)
    doc.line(60, 315, w - 60, 315, pal["ink"], 1)
    D.signature(doc.d, doc.box(w - 520, 350, w - 80, 450), f, (20, 30, 110), max(1, doc.p(2.5)))
    doc.line(w - 540, 460, w - 60, 460, pal["ink"], 1)
    doc.text(60, 370, doc.lab("account", P.lang) + " " + T.digits(t, 10), 18, "label", pal["label"])
    micr = f"⑈{T.digits(f, 6)}⑈ ⑆{T.digits(t, 9)}⑆ {T.digits(t, 10)}⑈"
    micr = micr.replace("⑈", "|").replace("⑆", ":")
    doc.text(100, h - 90, micr, 34, "mono", (15, 15, 15))
    doc.end_pil()
    return doc.bgr()


def render_voucher(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    st = make_style(t)
    w, h = 1000, 460
    doc = Doc(w, h, s, t, f, st)
    pal = st.pal
    D.gradient(doc.arr, pal["primary"], pal["accent"], float(t.uniform(0, 6.28)))
    if t.random() < 0.7:
        D.guilloche(doc.arr, t, D.mix(pal["primary"], (255, 255, 255), 0.3), (0, 0, doc.W, doc.H), s, "rosette")
    doc.begin_pil()
    P = Page(doc, "company")
    light = (250, 250, 250)
    assert doc.d is not None
    D.emblem(doc.d, (doc.p(90), doc.p(90)), doc.p(55), t, light, pal["stock"])
    doc.text(170, 60, P.org, 30, "title", light, maxw=500)
    doc.text(w / 2, 170, T.title(family, st.lang, t), float(t.uniform(44, 64)), "title", light, "ma", maxw=w - 100)
    doc.text(w / 2, 260, f"{P.cur} {int(f.choice([10, 20, 25, 50, 100, 200]))}", 64, "title", light, "ma")
    doc.rect(w - 330, h - 90, w - 30, h - 30, fill=(255, 255, 255), r=8)
    doc.text(w - 180, h - 60, T.alnum(f, 4) + "-" + T.alnum(f, 4) + "-" + T.alnum(f, 4), 22, "mono", (20, 20, 20), "mm")
    doc.text(40, h - 60, f"{doc.lab('valid', st.lang)}: {T.date(f, 'dmy.', 2025, 2030)}", 18, "label", light, "lm")
    doc.end_pil()
    return doc.bgr()
