"""ID-1 cards (identity, licence, insurance, membership...), card backs and passport pages.

Why: identity-like documents share a grammar (security background, header with
issuing body, photo, labelled fields, MRZ/codes) but differ per issuer; each
template draws its own arrangement of that grammar.
"""
from __future__ import annotations

import math

import numpy as np

from . import draw as D
from . import text as T
from .doc import Doc, make_style

Rng = np.random.Generator


# ------------------------------------------------------------------ values
def number_pattern(t: Rng) -> str:
    pats = ["LLDDDDDDD", "DDDDDDDDD", "LDDDDDDDL", "DDD DDD DDD", "LLL-DDDDDD", "DDDDDDDDDDDD", "LDDDDDDD",
            "DDDD DDDD DDDD", "DD-DDDDDD-D"]
    return pats[int(t.integers(len(pats)))]


def fill_pattern(f: Rng, pat: str) -> str:
    out = []
    for ch in pat:
        if ch == "L":
            out.append(T.letters(f, 1))
        elif ch == "D":
            out.append(T.digits(f, 1))
        else:
            out.append(ch)
    return "".join(out)


def field_value(doc: Doc, key: str, who: dict) -> str:
    f, st = doc.f, doc.st
    lang = st.lang
    dfmt = st.extra["date_fmt"]
    if key in ("surname", "given", "name"):
        v = who[key]
        return v.upper() if st.extra.get("upper_values") and v.isascii() else v
    if key == "dob":
        return T.date(f, dfmt, 1940, 2008)
    if key in ("expiry", "valid"):
        return T.date(f, dfmt, 2026, 2036)
    if key in ("issue", "date"):
        return T.date(f, dfmt, 2014, 2025)
    if key == "sex":
        v = str(f.choice(["M", "F"]))
        return {"zh": {"M": "男", "F": "女"}, "ja": {"M": "男", "F": "女"}, "ko": {"M": "남", "F": "여"}}.get(lang, {}).get(v, v)
    if key == "nationality":
        return st.extra["nat"] if f.random() < 0.7 or key != "nationality" else T.letters(f, 3)
    if key in ("number", "personal_no", "insured", "member", "student_no", "account", "customer"):
        return fill_pattern(f, st.extra["numpat"])
    if key == "address":
        return " ".join(T.address(f, lang)) if T.is_cjk(lang) else ", ".join(T.address(f, lang))
    if key == "pob":
        return T.city(f, lang)
    if key == "authority":
        return st.extra["authority"] + (" " + T.city(f, lang) if not T.is_cjk(lang) else T.city(f, lang))
    if key == "height":
        return f"{f.integers(150, 200)} cm"
    if key == "category":
        cats = ["AM", "A1", "A2", "A", "B1", "B", "BE", "C1", "C", "D1", "D"]
        return " ".join(sorted(set(f.choice(cats, size=int(f.integers(1, 5))))))
    if key == "permit_type":
        return st.extra["permit_words"][int(f.integers(len(st.extra["permit_words"])))]
    if key == "faculty":
        return T.word(f, 3) + (" " + T.word(f, 2) if f.random() < 0.5 else "") if not T.is_cjk(lang) else T.sentence(f, lang, 2)[:4]
    if key == "remarks":
        return T.sentence(f, lang, 3)[:-1]
    if key == "class":
        return str(f.choice(["A", "B", "GOLD", "SILVER", "STANDARD", "PREMIUM"]))
    return T.word(f, 2)


CARD_FIELDS = {
    # family: (required, optional)
    "id_card_front": (["surname", "given", "dob", "number"], ["sex", "nationality", "pob", "expiry", "issue", "personal_no", "height"]),
    "driver_licence": (["surname", "given", "dob", "number", "category"], ["issue", "expiry", "authority", "pob", "address"]),
    "residence_permit": (["surname", "given", "permit_type", "expiry"], ["dob", "sex", "nationality", "number", "remarks", "issue"]),
    "health_insurance_card": (["name", "insured"], ["dob", "valid", "member", "issue", "sex"]),
    "membership_card": (["name", "member"], ["valid", "class", "issue"]),
    "student_card": (["name", "student_no"], ["faculty", "dob", "valid", "issue"]),
    "vehicle_registration": (["number", "name", "address"], ["issue", "category", "remarks", "valid", "authority"]),
    "employee_badge": (["name"], ["number", "faculty", "valid"]),
    "id_card_back": (["address"], ["authority", "issue", "height", "pob", "remarks", "personal_no"]),
}


def _who(doc: Doc) -> dict:
    f, lang = doc.f, doc.st.lang
    sn, gn = T.surname(f, lang), T.given_name(f, lang)
    name = (sn + gn) if T.is_cjk(lang) else (f"{gn} {sn}" if doc.st.extra["name_order"] == 0 else f"{sn.upper()}, {gn}")
    return {"surname": sn, "given": gn, "name": name}


def _setup(doc: Doc, family: str) -> None:
    t, st = doc.t, doc.st
    lang = st.lang
    st.extra.update(
        date_fmt={"zh": "ymd.", "ja": "cjk", "ko": "ko"}.get(lang) or str(t.choice(["dmy.", "dmy/", "dMy", "ymd-", "mdy/"])),
        numpat=number_pattern(t),
        nat=T.letters(t, 3),
        state=T.state_name(t, lang),
        title=T.title(family, lang, t),
        title2=T.title(family, st.lang2, t) if st.lang2 else "",
        authority=T.org_name(t, lang, "company").split(" ")[0] if not T.is_cjk(lang) else T.org_name(t, lang, "company")[:2],
        permit_words=[T.word(t, 2).upper() + " " + T.word(t, 2).upper() for _ in range(3)],
        upper_values=bool(t.random() < 0.6),
        name_order=int(t.integers(2)),
        issuer=T.org_name(t, lang, {"health_insurance_card": "clinic", "membership_card": "club", "student_card": "school",
                                     "employee_badge": "company", "bank_card": "bank", "gift_voucher": "company"}.get(family, "company")),
    )


def _background(doc: Doc) -> None:
    t, st, arr, s = doc.t, doc.st, doc.arr, doc.s
    pal = st.pal
    mode = int(t.integers(0, 4))
    if mode >= 1:
        D.gradient(arr, pal["stock"], pal["stock2"], float(t.uniform(0, 6.28)))
    n_g = int(t.integers(0, 3))
    for _ in range(n_g):
        D.guilloche(arr, t, D.mix(pal["pattern"], pal["stock"], float(t.uniform(0.2, 0.6))), (0, 0, doc.W, doc.H), s)
    if t.random() < 0.25:
        D.dots(arr, t, pal["pattern"], s)
    D.noise_texture(arr, int(t.integers(1 << 30)), 2.0)


def _header(doc: Doc, family: str, x0: float, x1: float, y0: float) -> float:
    """Draw header (band/stripe/plain) with state + title + emblem; returns bottom y."""
    t, st = doc.t, doc.st
    pal = st.pal
    kind = str(t.choice(["band", "stripe", "plain", "band2"]))
    hh = float(t.uniform(70, 115))
    align = str(t.choice(["left", "center", "right"], p=[0.5, 0.4, 0.1]))
    has_emb = t.random() < 0.6
    emb_r = hh * 0.32
    txt_col = pal["ink"]
    if kind in ("band", "band2"):
        col = pal["primary"] if kind == "band" else pal["accent"]
        doc.rect(x0, y0, x1, y0 + hh, fill=col)
        txt_col = (255, 255, 255) if sum(col) < 450 else (20, 20, 20)
        if kind == "band2":
            doc.rect(x0, y0 + hh, x1, y0 + hh + 6, fill=pal["primary"])
    elif kind == "stripe":
        doc.rect(x0, y0 + hh - 4, x1, y0 + hh + 2, fill=pal["accent"])
        txt_col = pal["primary"]
    ex = x0 + 24 + emb_r
    tx0 = x0 + 24 + (emb_r * 2 + 14 if has_emb and align == "left" else 0)
    if has_emb:
        if align != "left":
            ex = x1 - 24 - emb_r if align == "center" else x0 + 24 + emb_r
        assert doc.d is not None
        D.emblem(doc.d, (doc.p(ex), doc.p(y0 + hh / 2)), doc.p(emb_r), t, txt_col if kind.startswith("band") else pal["primary"], pal["accent"])
    small = float(t.uniform(15, 20))
    big = float(t.uniform(26, 38))
    anchor = {"left": "la", "center": "ma", "right": "ra"}[align]
    xx = {"left": tx0, "center": (x0 + x1) / 2, "right": x1 - 24}[align]
    maxw = (x1 - x0) - 60 - (emb_r * 2 if has_emb else 0)
    order = int(t.integers(2))
    lines = [(st.extra["state"], small, "label"), (st.extra["title"], big, "title")]
    if st.extra["title2"] and t.random() < 0.7:
        lines.append((st.extra["title2"], small * 0.9, "label"))
    if order:
        lines[0], lines[1] = lines[1], lines[0]
    tot = sum(sz * 1.15 for _, sz, _ in lines)
    y = y0 + (hh - tot) / 2
    for txt, sz, role in lines:
        doc.text(xx, y, txt, sz, role, txt_col, anchor, maxw=maxw)
        y += sz * 1.15
    return y0 + hh + (8 if kind == "band2" else 0)


def _fields(doc: Doc, keys: list[str], box: tuple[float, float, float, float], who: dict, ncol: int, style: str,
            lsize: float, vsize: float) -> None:
    x0, y0, x1, y1 = box
    st = doc.st
    rows = math.ceil(len(keys) / ncol)
    rh = min((y1 - y0) / max(rows, 1), (lsize + vsize) * 1.9)
    cw = (x1 - x0) / ncol
    for i, k in enumerate(keys):
        c, r = i % ncol, i // ncol
        if k in ("address", "remarks", "authority") and ncol > 1 and c == 0 and i == len(keys) - 1:
            cw_k = x1 - x0
        else:
            cw_k = cw
        x, y = x0 + c * cw, y0 + r * rh
        lab, val = doc.lab(k), field_value(doc, k, who)
        if style == "above":
            doc.text(x, y, lab, lsize, "label", st.pal["label"], maxw=cw_k - 8)
            doc.text(x, y + lsize * 1.25, val, vsize, "value", st.pal["ink"], maxw=cw_k - 8)
        else:
            lw = doc.text(x, y + (vsize - lsize) * 0.6, lab + ("" if st.extra.get("nocolon") else ":"), lsize, "label",
                          st.pal["label"], maxw=cw_k * 0.45)
            doc.text(x + max(lw, cw_k * st.extra["inline_frac"]) + 8, y, val, vsize, "value", st.pal["ink"],
                     maxw=cw_k - max(lw, cw_k * st.extra["inline_frac"]) - 14)


def render_card(family: str, t: Rng, f: Rng, s: float, size: tuple[int, int] = (860, 540)) -> np.ndarray:
    """Generic ID-1 style card (front)."""
    st = make_style(t)
    w, h = size
    doc = Doc(w, h, s, t, f, st)
    _setup(doc, family)
    st.extra["inline_frac"] = float(t.uniform(0.3, 0.45))
    st.extra["nocolon"] = bool(t.random() < 0.5)
    _background(doc)
    doc.begin_pil()
    pal = st.pal
    m = float(t.uniform(0, 14))
    side_band = t.random() < 0.25
    x0 = m
    if side_band:
        bw = float(t.uniform(30, 70))
        doc.rect(0, 0, bw, h, fill=pal["accent"])
        x0 = bw + 4
    y = _header(doc, family, x0, w - m, m)
    req, opt = CARD_FIELDS.get(family, CARD_FIELDS["id_card_front"])
    n_opt = int(t.integers(max(0, min(2, len(opt))), len(opt) + 1))
    keys = list(req) + [opt[i] for i in sorted(t.choice(len(opt), size=n_opt, replace=False))]
    if t.random() < 0.5:
        keys = [keys[i] for i in t.permutation(len(keys))]
    photo = family not in ("membership_card", "health_insurance_card") or t.random() < 0.3
    pside = str(t.choice(["left", "right"], p=[0.7, 0.3]))
    pw = float(t.uniform(170, 230)) if photo else 0
    ph = pw * 1.28
    avail = h - y - 20
    if ph > avail - 10:
        ph = avail - 10
        pw = ph / 1.28
    py = y + 14
    px = x0 + 22 if pside == "left" else w - m - 22 - pw
    vertical = h > w
    if vertical:  # badge: photo centred under the header, fields below it
        photo = True
        pw = w * float(t.uniform(0.4, 0.55))
        ph = pw * 1.28
        px = (w - pw) / 2 if t.random() < 0.7 else x0 + 30
    who = _who(doc)
    pseed = int(f.integers(1 << 30))
    if photo:
        pstyle = "gray" if t.random() < 0.35 else "color"
        pbg = D.mix(pal["stock"], (255, 255, 255), 0.5) if t.random() < 0.5 else (225, 228, 232)
        assert doc.img is not None
        D.portrait(doc.img, doc.box(px, py, px + pw, py + ph), np.random.default_rng(pseed), pstyle, pbg)
        if t.random() < 0.5:
            doc.rect(px, py, px + pw, py + ph, outline=pal["primary"], width=2)
    fx0 = (px + pw + 28) if (photo and pside == "left") else x0 + 26
    fx1 = (px - 20) if (photo and pside == "right") else w - m - 20
    if vertical:
        fx0, fx1 = x0 + 30, w - m - 30
    bottom_extra = str(t.choice(["none", "barcode", "signature", "mrzlike", "number"], p=[0.3, 0.2, 0.3, 0.05, 0.15]))
    fy1 = h - 24 - (60 if bottom_extra != "none" else 0)
    ncol = 2 if (len(keys) > 4 and (fx1 - fx0) > 420 and t.random() < 0.7) else 1
    fstyle = str(t.choice(["above", "inline"], p=[0.65, 0.35]))
    lsize, vsize = float(t.uniform(12, 16)), float(t.uniform(18, 25))
    fy0 = py + ph + 24 if vertical else py
    if vertical:
        ncol, vsize = 1, vsize * 1.2
    rows = math.ceil(len(keys) / ncol)
    need = rows * (lsize + vsize) * 1.5
    if need > fy1 - fy0:
        k = (fy1 - fy0) / need
        lsize, vsize = max(9, lsize * k), max(11, vsize * k)
    _fields(doc, keys, (fx0, fy0, fx1, fy1), who, ncol, fstyle, lsize, vsize)
    # extras
    if family in ("id_card_front", "health_insurance_card", "residence_permit", "driver_licence") and t.random() < 0.4:
        cx = fx1 - 110 if t.random() < 0.5 else fx0
        cy = fy1 - 80
        assert doc.d is not None
        D.chip(doc.d, doc.box(cx, cy, cx + 90, cy + 68), (214, 182, 95))
    if bottom_extra == "barcode":
        assert doc.d is not None
        bx = float(t.uniform(x0 + 20, w * 0.45))
        D.barcode(doc.d, doc.box(bx, h - 78, bx + float(t.uniform(250, 400)), h - 24), f, pal["ink"])
    elif bottom_extra == "signature":
        sx = fx0 if pside == "left" or not photo else x0 + 26
        doc.text(sx, h - 80, doc.lab("signature"), 11, "label", pal["label"])
        assert doc.d is not None
        D.signature(doc.d, doc.box(sx, h - 70, sx + 240, h - 18), f, (20, 30, 90), max(1, doc.p(2.2)))
    elif bottom_extra == "mrzlike":
        doc.text(x0 + 24, h - 60, "<" * 3 + T.alnum(f, 20) + "<" * 5, 26, "mono", pal["ink"], maxw=w - 60)
    elif bottom_extra == "number":
        doc.text(w - m - 30, h - 70, fill_pattern(f, st.extra["numpat"]), 34, "mono", (190, 30, 30), "ra")
    if photo and t.random() < 0.35:  # ghost image
        gx = w - m - 120 if pside == "left" else x0 + 20
        gy = h - 170
        assert doc.img is not None
        D.portrait(doc.img, doc.box(gx, gy, gx + 90, gy + 115), np.random.default_rng(pseed), "gray",
                   D.mix(pal["stock"], (255, 255, 255), 0.3))
    if t.random() < 0.3:
        qs = float(t.uniform(80, 120))
        qx, qy = (w - m - 24 - qs, h - 24 - qs) if pside == "left" else (x0 + 24, h - 24 - qs)
        assert doc.img is not None
        D.qr(doc.img, doc.box(qx, qy, qx + qs, qy + qs), T.alnum(f, 24))
    border = t.random() < 0.3
    if border:
        doc.rect(4, 4, w - 4, h - 4, outline=pal["primary"], width=3, r=24)
    doc.end_pil()
    if t.random() < 0.35:
        hx, hy = float(t.uniform(0, w - 200)), float(t.uniform(0, h - 200))
        D.hologram(doc.arr, doc.box(hx, hy, hx + 200, hy + 200), t)
    return doc.bgr()


def render_card_back(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    """ID card back: address/authority fields, codes, optional TD1 MRZ."""
    st = make_style(t)
    w, h = 860, 540
    doc = Doc(w, h, s, t, f, st)
    _setup(doc, family)
    st.extra["inline_frac"] = float(t.uniform(0.3, 0.45))
    _background(doc)
    doc.begin_pil()
    pal = st.pal
    has_mrz = t.random() < 0.75
    mrz_h = 150 if has_mrz else 0
    who = _who(doc)
    req, opt = CARD_FIELDS["id_card_back"]
    keys = req + [opt[i] for i in sorted(t.choice(len(opt), size=int(t.integers(1, len(opt))), replace=False))]
    code = str(t.choice(["barcode", "qr", "pdf417", "none"]))
    code_side = str(t.choice(["left", "right"]))
    fx0, fx1 = 30.0, w - 30.0
    cy0 = 40
    if code != "none":
        cw = 220 if code != "barcode" else 260
        if code_side == "left":
            cx0 = 30
            fx0 = cx0 + cw + 30
        else:
            cx0 = w - 30 - cw
            fx1 = cx0 - 30
        assert doc.d is not None and doc.img is not None
        if code == "barcode":
            D.barcode(doc.d, doc.box(cx0, cy0 + 20, cx0 + cw, cy0 + 110), f, pal["ink"], vertical=False)
            doc.text(cx0 + cw / 2, cy0 + 118, T.digits(f, 13), 16, "mono", pal["ink"], "ma")
        elif code == "qr":
            D.qr(doc.img, doc.box(cx0, cy0, cx0 + 180, cy0 + 180), T.alnum(f, 40))
        else:
            D.pdf417(doc.d, doc.box(cx0, cy0, cx0 + cw, cy0 + 120), f)
    if t.random() < 0.5:
        doc.text(fx0, 16, st.extra["title"], 20, "title", pal["primary"], maxw=fx1 - fx0)
        cy0 += 20
    lsize, vsize = float(t.uniform(12, 15)), float(t.uniform(17, 22))
    _fields(doc, keys, (fx0, cy0 + 10, fx1, h - mrz_h - 60), who, 1, str(t.choice(["above", "inline"])), lsize, vsize)
    if t.random() < 0.6:
        sx = float(t.uniform(40, w - 300))
        st_col = (40, 60, 160) if t.random() < 0.5 else (170, 40, 40)
        assert doc.img is not None
        D.stamp(doc.img, (doc.p(sx + 100), doc.p(h - mrz_h - 95)), doc.p(60), [st.extra["authority"].upper(), T.city(f, st.lang)],
                st.f_label, st_col, float(f.uniform(-25, 25)), "circle")
    if has_mrz:
        if t.random() < 0.5:
            doc.rect(0, h - mrz_h, w, h, fill=D.mix(pal["stock"], (255, 255, 255), 0.7))
        lines = D.mrz_lines(f, "td1", who["surname"], who["given"], st.extra["nat"], field_value(doc, "number", who))
        y = h - mrz_h + 14
        for ln in lines:
            doc.text(w / 2, y, ln, 36, "mono", (15, 15, 15), "ma", maxw=w - 40)
            y += 42
    doc.end_pil()
    return doc.bgr()


def render_passport(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    """Passport data page (TD3): photo, two-column fields, two-line MRZ."""
    st = make_style(t)
    w, h = 1250, 880
    doc = Doc(w, h, s, t, f, st)
    _setup(doc, family)
    st.extra["inline_frac"] = 0.4
    _background(doc)
    pal = st.pal
    if t.random() < 0.6:
        D.guilloche(doc.arr, t, D.mix(pal["pattern"], pal["stock"], 0.3), (0, 0, doc.W, doc.p(h - 200)), s, "rosette")
    doc.begin_pil()
    y = _header(doc, family, 0, w, 0)
    who = _who(doc)
    pside = str(t.choice(["left", "right"], p=[0.85, 0.15]))
    pw, ph = float(t.uniform(270, 320)), 0.0
    ph = pw * 1.28
    py = y + 26
    px = 40 if pside == "left" else w - 40 - pw
    assert doc.img is not None and doc.d is not None
    D.portrait(doc.img, doc.box(px, py, px + pw, py + ph), f, "gray" if t.random() < 0.6 else "color", (230, 230, 230))
    fx0 = px + pw + 40 if pside == "left" else 40
    fx1 = w - 40 if pside == "left" else px - 40
    top = ["type", "code", "number"]
    doc.text(fx0, py, "Type / Type", 13, "label", pal["label"])
    doc.text(fx0, py + 17, "P", 22, "value")
    doc.text(fx0 + 150, py, "Code", 13, "label", pal["label"])
    doc.text(fx0 + 150, py + 17, st.extra["nat"], 22, "value")
    doc.text(fx1, py, doc.lab("number"), 13, "label", pal["label"], "ra")
    doc.text(fx1, py + 17, fill_pattern(f, st.extra["numpat"]), 24, "value", (170, 20, 20) if t.random() < 0.5 else pal["ink"], "ra")
    del top
    keys = ["surname", "given", "nationality", "dob", "sex", "pob", "issue", "expiry", "authority"]
    if t.random() < 0.5:
        keys.insert(2, "personal_no")
    ncol = 2 if t.random() < 0.5 else 1
    if ncol == 1:
        keys = keys[:7]
    _fields(doc, keys, (fx0, py + 60, fx1, h - 190), who, ncol, "above", 13, float(t.uniform(20, 25)))
    doc.text(px, py + ph + 10, doc.lab("signature"), 11, "label", pal["label"])
    D.signature(doc.d, doc.box(px, py + ph + 26, px + pw, min(py + ph + 90, h - 200)), f, (20, 30, 90), max(1, doc.p(2.5)))
    doc.rect(0, h - 180, w, h, fill=D.mix(pal["stock"], (255, 255, 255), 0.75))
    lines = D.mrz_lines(f, "td3", who["surname"], who["given"], st.extra["nat"], field_value(doc, "number", who))
    for i, ln in enumerate(lines):
        doc.text(w / 2, h - 150 + i * 62, ln, 44, "mono", (15, 15, 15), "ma", maxw=w - 40)
    doc.end_pil()
    if t.random() < 0.5:
        D.hologram(doc.arr, doc.box(px - 20, py + ph * 0.5, px + pw + 80, py + ph + 40), t)
    return doc.bgr()


def render_bank_card(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    st = make_style(t)
    w, h = 860, 540
    doc = Doc(w, h, s, t, f, st)
    _setup(doc, family)
    pal = st.pal
    D.gradient(doc.arr, pal["primary"], pal["accent"], float(t.uniform(0, 6.28)))
    if t.random() < 0.6:
        D.guilloche(doc.arr, t, D.mix(pal["primary"], (255, 255, 255), 0.25), (0, 0, doc.W, doc.H), s, "waves")
    doc.begin_pil()
    light = (245, 245, 245)
    doc.text(50, 40, st.extra["issuer"], float(t.uniform(30, 42)), "title", light, maxw=560)
    assert doc.d is not None
    D.emblem(doc.d, (doc.p(w - 100), doc.p(80)), doc.p(45), t, light, pal["accent"])
    D.chip(doc.d, doc.box(80, 190, 190, 270), (214, 182, 95))
    num = " ".join(T.digits(f, 4) for _ in range(4))
    doc.text(70, 310, num, float(t.uniform(40, 48)), "mono", light, maxw=740)
    doc.text(70, 390, "VALID THRU " + f"{f.integers(1, 13):02d}/{f.integers(26, 35)}", 20, "mono", light)
    doc.text(70, 440, _who(doc)["name"].upper() if doc.st.lang not in T.CJK_LANGS else _who(doc)["name"], 28, "mono", light, maxw=520)
    doc.text(w - 60, 470, st.extra["title"], 24, "title", light, "ra")
    for k in range(2):
        doc.d.ellipse(doc.box(w - 200 + k * 60, 380, w - 110 + k * 60, 450), fill=D.mix(pal["accent"], (255, 200, 0), 0.5 * k + 0.2))
    doc.end_pil()
    return doc.bgr()


def render_business_card(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    st = make_style(t)
    w, h = 900, 520
    doc = Doc(w, h, s, t, f, st)
    _setup(doc, family)
    pal = st.pal
    D.fill(doc.arr, D.mix(pal["stock"], (255, 255, 255), float(t.uniform(0.3, 1))))
    doc.begin_pil()
    lay = int(t.integers(3))
    assert doc.d is not None
    if lay == 0:
        doc.rect(0, 0, w * 0.33, h, fill=pal["primary"])
        D.emblem(doc.d, (doc.p(w * 0.165), doc.p(h / 2)), doc.p(70), t, (250, 250, 250), pal["accent"])
        x = w * 0.38
    elif lay == 1:
        doc.rect(0, h - 40, w, h, fill=pal["accent"])
        D.emblem(doc.d, (doc.p(w - 110), doc.p(100)), doc.p(55), t, pal["primary"], pal["accent"])
        x = 60
    else:
        D.emblem(doc.d, (doc.p(100), doc.p(100)), doc.p(50), t, pal["primary"], pal["accent"])
        doc.text(180, 70, st.extra["issuer"], 30, "title", pal["primary"], maxw=650)
        x = 60
    who = _who(doc)
    doc.text(x, 190, who["name"], 40, "title", pal["ink"], maxw=w - x - 30)
    doc.text(x, 245, T.word(f, 3) + " " + T.word(f, 3), 22, "label", pal["label"], maxw=w - x - 30)
    y = 320
    for line in [f"{doc.lab('phone', st.lang)}: +{T.digits(f, 2)} {T.digits(f, 3)} {T.digits(f, 4)}",
                 f"{T.word(f, 2).lower()}@{T.word(f, 2).lower()}.example", ", ".join(T.address(f, st.lang))]:
        doc.text(x, y, line, 19, "value", pal["ink"], maxw=w - x - 30)
        y += 32
    doc.end_pil()
    return doc.bgr()
