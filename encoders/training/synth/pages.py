"""A4 pages (statements, invoices, forms, letters, reports) built from blocks.

Why: business documents are stacks of a few block kinds (letterhead, address
window, key/value grid, ruled table, totals, paragraphs, form boxes,
signatures, footer); a template fixes which blocks, their order, sizes and
styling, the fill only supplies the words and numbers.
"""
from __future__ import annotations

import numpy as np

from . import draw as D
from . import text as T
from .doc import Doc, make_style

Rng = np.random.Generator
PAGE = (1240, 1754)
PAGE_LANGS = {"en": 4, "fr": 1, "de": 1.2, "es": 1, "it": 0.6, "nl": 0.5, "pt": 0.5, "zh": 0.7, "ja": 0.7, "ko": 0.5}


def doc_cut(doc: Doc, txt: str, size: float, maxw: float) -> str:
    """Cut a line at a word boundary to at most maxw (base units)."""
    fnt = doc.font_for(txt, "value", size)
    while len(txt) > 1 and fnt.getlength(txt) > maxw * doc.s:
        i = txt.rfind(" ")
        txt = txt[:i] if i > 0 else txt[: int(len(txt) * 0.8)]
    return txt


def wrap(doc: Doc, txt: str, size: float, role: str, maxw: float, max_lines: int = 0) -> list[str]:
    """Greedy word wrap (char wrap for CJK); measures each word once for speed."""
    fnt = doc.font_for(txt, role, size)
    lim = maxw * doc.s
    cjk = T.is_cjk(doc.st.lang) and any(ord(c) > 0x2E80 for c in txt)
    toks = list(txt) if cjk else txt.split(" ")
    sep = "" if cjk else " "
    sw = 0.0 if cjk else fnt.getlength(" ")
    cache: dict[str, float] = {}
    lines: list[str] = []
    cur: list[str] = []
    cw = 0.0
    for tok in toks:
        tw = cache.get(tok)
        if tw is None:
            tw = cache[tok] = fnt.getlength(tok)
        add = tw + (sw if cur else 0.0)
        if cur and cw + add > lim:
            lines.append(sep.join(cur))
            if max_lines and len(lines) >= max_lines:
                return lines
            cur, cw = [tok], tw
        else:
            cur.append(tok)
            cw += add
    if cur:
        lines.append(sep.join(cur))
    return lines[:max_lines] if max_lines else lines


class Page:
    """Sequential block layout on a page; every method returns nothing and advances self.y."""

    def __init__(self, doc: Doc, family: str):
        self.doc, self.t, self.f, self.st = doc, doc.t, doc.f, doc.st
        t = doc.t
        self.fam = family
        self.m = float(t.uniform(70, 120))
        self.x0, self.x1 = self.m, doc.w - self.m
        self.y = float(t.uniform(50, 90))
        self.body = float(t.uniform(18, 24))
        self.gap = float(t.uniform(18, 40))
        self.rule = D.mix(self.st.pal["primary"], (0, 0, 0), float(t.uniform(0, 0.5)))
        self.lang = self.st.lang
        self.dfmt = {"zh": "ymd-", "ja": "cjk", "ko": "ko"}.get(self.lang) or str(t.choice(["dmy.", "dmy/", "dMy", "ymd-", "mdy/"]))
        self.msep = "," if self.lang in ("fr", "de", "es", "it", "nl", "pt") else "."
        self.cur = str(t.choice(["EUR", "€", "$", "£", "CHF", "¥", "₩", "USD"]))
        self.org = T.org_name(t, self.lang, {"bank_statement": "bank", "utility_bill": "utility", "medical_report": "clinic",
                                             "boarding_pass": "transport"}.get(family, "company"))
        self.org_addr = T.address(t, self.lang)
        self.title = T.title(family, self.lang, t)
        self.upper_title = bool(t.random() < 0.5)
        self.numpat = str(t.choice(["DDDDDDDD", "LL-DDDDDD", "DDDD/DDDD", "LDDDDDDDDD", "DDD-DDD-DDD"]))

    # ---- helpers
    def lab(self, key: str) -> str:
        return self.doc.lab(key, self.lang)

    def num(self) -> str:
        out = []
        for ch in self.numpat:
            out.append(T.letters(self.f, 1) if ch == "L" else T.digits(self.f, 1) if ch == "D" else ch)
        return "".join(out)

    def money(self, lo=1.0, hi=2000.0) -> str:
        return T.money(self.f, lo, hi, self.msep)

    def date(self) -> str:
        return T.date(self.f, self.dfmt, 2019, 2026)

    # ---- blocks
    def header(self) -> None:
        doc, t, pal = self.doc, self.t, self.st.pal
        kind = str(t.choice(["logo_left", "band", "centered", "logo_right"]))
        assert doc.d is not None
        if kind == "band":
            bh = float(t.uniform(110, 170))
            doc.rect(0, 0, doc.w, bh, fill=pal["primary"])
            D.emblem(doc.d, (doc.p(self.x0 + 45), doc.p(bh / 2)), doc.p(40), t, (255, 255, 255), pal["accent"])
            doc.text(self.x0 + 110, bh / 2, self.org, float(t.uniform(28, 40)), "title", (255, 255, 255), "lm", maxw=600)
            doc.text(self.x1, bh / 2, self.org_addr[0], 15, "label", (235, 235, 235), "rm", maxw=380)
            self.y = bh + self.gap
            return
        r = float(t.uniform(30, 50))
        osz = float(t.uniform(24, 36))
        if kind == "centered":
            D.emblem(doc.d, (doc.p(doc.w / 2), doc.p(self.y + r)), doc.p(r), t, pal["primary"], pal["accent"])
            doc.text(doc.w / 2, self.y + 2 * r + 12, self.org, osz, "title", pal["primary"], "ma", maxw=900)
            doc.text(doc.w / 2, self.y + 2 * r + 20 + osz * 1.2, "  ·  ".join(self.org_addr), 14, "label", pal["label"], "ma")
            self.y += 2 * r + 40 + osz * 1.2 + 14
        else:
            left = kind == "logo_left"
            ex = self.x0 + r if left else self.x1 - r
            D.emblem(doc.d, (doc.p(ex), doc.p(self.y + r)), doc.p(r), t, pal["primary"], pal["accent"])
            tx = self.x0 + 2 * r + 20 if left else self.x0
            doc.text(tx, self.y + r - osz * 0.6, self.org, osz, "title", pal["primary"], maxw=560)
            ax = self.x1 if left else self.x1 - 2 * r - 20
            for i, ln in enumerate(self.org_addr + [f"{self.lab('phone')} +{T.digits(t, 2)} {T.digits(t, 8)}"]):
                doc.text(ax, self.y + i * 20, ln, 14, "label", pal["label"], "ra", maxw=360)
            self.y += max(2 * r, 80) + 12
        if t.random() < 0.6:
            doc.line(self.x0, self.y, self.x1, self.y, self.rule, float(t.uniform(1, 4)))
        self.y += self.gap

    def title_block(self, sub: bool = True) -> None:
        doc, t = self.doc, self.t
        sz = float(t.uniform(28, 46))
        al = str(t.choice(["la", "ma"]))
        x = self.x0 if al == "la" else self.doc.w / 2
        ttl = self.title.upper() if self.upper_title else self.title
        doc.text(x, self.y, ttl, sz, "title", self.st.pal["primary"] if t.random() < 0.6 else self.st.pal["ink"], al, maxw=self.x1 - self.x0)
        self.y += sz * 1.3
        if sub:
            doc.text(x, self.y, f"{self.lab('period')}: {self.date()} – {self.date()}", self.body * 0.9, "label", self.st.pal["label"], al)
            self.y += self.body * 1.6
        self.y += self.gap * 0.6

    def address_block(self, meta: list[str] | None) -> None:
        doc, f, t = self.doc, self.f, self.t
        right = t.random() < 0.3
        ax = self.x0 if not right else doc.w * 0.55
        ay = self.y
        doc.text(ax, ay, f"{self.org} · {self.org_addr[0]}", 11, "label", self.st.pal["label"], maxw=480)
        lines = [T.full_name(f, self.lang)] + T.address(f, self.lang)
        for i, ln in enumerate(lines):
            doc.text(ax, ay + 24 + i * self.body * 1.35, ln, self.body * 1.05, "value", maxw=460)
        if meta:
            mx = doc.w * 0.58 if not right else self.x0
            for i, k in enumerate(meta):
                yy = ay + i * self.body * 1.45
                doc.text(mx, yy, self.lab(k), self.body * 0.9, "label", self.st.pal["label"], maxw=200)
                v = self.date() if k in ("date", "due") else self.num()
                doc.text(mx + 210, yy, v, self.body * 0.9, "value", maxw=250)
        self.y += max(24 + 3 * self.body * 1.35, len(meta or []) * self.body * 1.45) + self.gap * 1.2

    def kv_block(self, keys: list[str], ncol: int = 2, boxed: bool | None = None) -> None:
        doc, t, f = self.doc, self.t, self.f
        boxed = bool(t.random() < 0.4) if boxed is None else boxed
        rows = (len(keys) + ncol - 1) // ncol
        rh = self.body * 1.6
        cw = (self.x1 - self.x0) / ncol
        if boxed:
            doc.rect(self.x0 - 8, self.y - 8, self.x1 + 8, self.y + rows * rh + 4, fill=D.mix(self.st.pal["stock2"], (255, 255, 255), 0.5),
                     outline=self.rule, width=1)
        for i, k in enumerate(keys):
            x, y = self.x0 + (i % ncol) * cw, self.y + (i // ncol) * rh
            doc.text(x, y, self.lab(k) + ":", self.body * 0.9, "label", self.st.pal["label"], maxw=cw * 0.45)
            if k in ("date", "due", "dob", "issue"):
                v = self.date()
            elif k in ("name", "patient", "employee"):
                v = T.full_name(f, self.lang)
            elif k in ("balance", "total", "amount", "gross", "net"):
                v = f"{self.money(10, 9000)} {self.cur}"
            elif k == "address":
                v = T.address(f, self.lang)[0]
            elif k in ("period",):
                v = f"{self.date()} – {self.date()}"
            else:
                v = self.num()
            doc.text(x + cw * 0.45, y, v, self.body * 0.95, "value", maxw=cw * 0.53)
        self.y += rows * rh + self.gap

    def table(self, cols: list[tuple[str, str]], nrows: int, fill_frac: tuple[float, float] = (1, 1)) -> None:
        """Ruled table; `cols` = [(label_key, kind)], kind in text/num/money/date/qty."""
        doc, t, f, pal = self.doc, self.t, self.f, self.st.pal
        style = str(t.choice(["grid", "hlines", "zebra", "minimal"]))
        head_fill = t.random() < 0.6
        rh = self.body * float(t.uniform(1.5, 2.1))
        wts = np.array([{"text": 3.2, "date": 1.4, "num": 1.4, "money": 1.4, "qty": 0.8}[k] for _, k in cols]) * t.uniform(0.8, 1.2, len(cols))
        xs = self.x0 + np.concatenate([[0], np.cumsum(wts / wts.sum())]) * (self.x1 - self.x0)
        y0 = self.y
        hcol = pal["primary"] if head_fill else None
        if head_fill:
            doc.rect(self.x0, y0, self.x1, y0 + rh, fill=hcol)
        htc = (255, 255, 255) if head_fill and sum(pal["primary"]) < 450 else pal["ink"]
        for j, (k, kind) in enumerate(cols):
            right = kind in ("money", "num", "qty")
            xx = xs[j + 1] - 8 if right else xs[j] + 8
            doc.text(xx, y0 + rh / 2, self.lab(k), self.body * 0.88, "title" if t.random() < 0.3 else "label", htc,
                     "rm" if right else "lm", maxw=xs[j + 1] - xs[j] - 12)
        nfill = nrows if fill_frac == (1, 1) else max(1, int(round(nrows * f.uniform(*fill_frac))))
        for i in range(nrows):
            yy = y0 + rh * (i + 1)
            if style == "zebra" and i % 2 == 0:
                doc.rect(self.x0, yy, self.x1, yy + rh, fill=D.mix(pal["stock2"], (255, 255, 255), 0.3))
            if i < nfill:
                for j, (k, kind) in enumerate(cols):
                    v = {"text": lambda: T.sentence(f, self.lang, int(f.integers(1, 5)))[:-1],
                         "date": self.date, "num": self.num, "money": lambda: self.money(),
                         "qty": lambda: str(int(f.integers(1, 20)))}[kind]()
                    right = kind in ("money", "num", "qty")
                    xx = xs[j + 1] - 8 if right else xs[j] + 8
                    doc.text(xx, yy + rh / 2, v, self.body * 0.85, "value", None, "rm" if right else "lm", maxw=xs[j + 1] - xs[j] - 12)
            if style in ("grid", "hlines", "zebra"):
                doc.line(self.x0, yy + rh, self.x1, yy + rh, D.mix(self.rule, (255, 255, 255), 0.5), 1)
        yb = y0 + rh * (nrows + 1)
        doc.line(self.x0, y0, self.x1, y0, self.rule, 1.5)
        doc.line(self.x0, y0 + rh, self.x1, y0 + rh, self.rule, 1.5)
        doc.line(self.x0, yb, self.x1, yb, self.rule, 1.5)
        if style == "grid":
            for x in xs:
                doc.line(x, y0, x, yb, self.rule, 1)
        self.y = yb + self.gap

    def totals(self, keys: list[str]) -> None:
        doc, t = self.doc, self.t
        x = self.x1 - 430
        boxed = t.random() < 0.5
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            sz = self.body * (1.15 if last else 0.95)
            if last and boxed:
                doc.rect(x - 10, self.y - 6, self.x1, self.y + sz * 1.5, fill=D.mix(self.st.pal["stock2"], (255, 255, 255), 0.3),
                         outline=self.rule)
            doc.text(x, self.y, self.lab(k), sz, "title" if last else "label", maxw=220)
            doc.text(self.x1 - 8, self.y, f"{self.money(10, 9000)} {self.cur}", sz, "title" if last else "value", None, "ra")
            self.y += sz * 1.7
        self.y += self.gap

    def paragraphs(self, n: int, numbered: bool = False, lines_range=(2, 6)) -> None:
        """Paragraph block; line counts are template-fixed so fills keep the layout."""
        doc, t, f = self.doc, self.t, self.f
        sz = self.body * float(t.uniform(0.85, 1.0))
        lh = sz * float(t.uniform(1.3, 1.6))
        counts = [int(t.integers(*lines_range)) if not numbered else int(t.integers(3, 7)) for _ in range(n)]
        last_frac = float(t.uniform(0.3, 0.9))
        for i, nl in enumerate(counts):
            if numbered:
                doc.text(self.x0, self.y, f"§ {i + 1}  " + T.word(t, 3) + " " + T.word(t, 2), sz * 1.05, "title")
                self.y += lh * 1.2
            nsent = nl + 1 if not T.is_cjk(self.lang) else nl * 3 + 1
            txt = " ".join(T.sentence(f, self.lang, int(f.integers(6, 14))) for _ in range(nsent))
            lines = wrap(doc, txt, sz, "value", self.x1 - self.x0, nl)
            for j, ln in enumerate(lines):
                if j == nl - 1 and nl > 1:
                    ln = doc_cut(doc, ln, sz, (self.x1 - self.x0) * last_frac)
                doc.text(self.x0, self.y, ln, sz, "value")
                self.y += lh
            self.y += lh * (nl - len(lines)) + lh * 0.6
        self.y += self.gap * 0.5

    def notice(self) -> None:
        doc, t, pal = self.doc, self.t, self.st.pal
        nl = int(t.integers(2, 5))
        sz = self.body * 0.85
        h = nl * sz * 1.5 + 30
        doc.rect(self.x0, self.y, self.x1, self.y + h, fill=D.mix(pal["accent"], (255, 255, 255), 0.85), outline=pal["accent"], width=1, r=6)
        txt = " ".join(T.sentence(self.f, self.lang, 10) for _ in range(nl * (1 if not T.is_cjk(self.lang) else 3)))
        for j, ln in enumerate(wrap(doc, txt, sz, "value", self.x1 - self.x0 - 40, nl)):
            doc.text(self.x0 + 20, self.y + 15 + j * sz * 1.5, ln, sz, "value")
        self.y += h + self.gap

    def fill_rest(self, limit: float) -> None:
        """Template-chosen extra blocks so pages are not half empty (layout only depends on t)."""
        t = self.t
        for _ in range(4):
            room = limit - self.y
            if room < 260 or t.random() < 0.25:
                break
            k = int(t.integers(4))
            if k == 0:
                self.paragraphs(1, lines_range=(2, max(3, min(8, int(room / (self.body * 1.6)) - 2))))
            elif k == 1:
                self.notice()
            elif k == 2:
                self.kv_block(["reference", "date", "customer", "phone"][: int(t.integers(2, 5))], 2)
            else:
                n = max(2, min(10, int((room - 120) / (self.body * 2.1)) - 1))
                self.table([("description", "text"), ("date", "date"), ("amount", "money")], int(t.integers(2, n + 1)))

    def form(self, n: int, ncol: int) -> None:
        doc, t, f, pal = self.doc, self.t, self.f, self.st.pal
        keys_pool = ["surname", "given", "dob", "pob", "nationality", "address", "phone", "email", "personal_no",
                     "number", "date", "sex", "issue", "reference", "customer", "account"]
        keys = [keys_pool[i] for i in t.choice(len(keys_pool), size=min(n, len(keys_pool)), replace=False)]
        style = str(t.choice(["boxes", "underline", "comb"]))
        bh = float(t.uniform(44, 62))
        cw = (self.x1 - self.x0) / ncol
        filled = f.random() < 0.8
        for i, k in enumerate(keys):
            x, y = self.x0 + (i % ncol) * cw, self.y + (i // ncol) * (bh + 26)
            doc.text(x, y, self.lab(k), self.body * 0.8, "label", pal["label"], maxw=cw - 20)
            by = y + self.body * 1.1
            if style == "boxes":
                doc.rect(x, by, x + cw - 20, by + bh * 0.75, outline=self.rule, width=1)
            elif style == "underline":
                doc.line(x, by + bh * 0.75, x + cw - 20, by + bh * 0.75, self.rule, 1)
            else:
                ncell = int((cw - 20) // 30)
                for c in range(ncell + 1):
                    doc.line(x + c * 30, by + bh * 0.35, x + c * 30, by + bh * 0.75, self.rule, 1)
                doc.line(x, by + bh * 0.75, x + ncell * 30, by + bh * 0.75, self.rule, 1)
            if filled and f.random() < 0.85:
                v = T.full_name(f, self.lang) if k in ("surname", "given") else self.date() if k in ("dob", "date", "issue") else \
                    T.address(f, self.lang)[0] if k == "address" else self.num()
                doc.text(x + 8, by + bh * 0.38, v, self.body * 1.05, "value", (20, 30, 110), "lm", maxw=cw - 40)
        self.y += ((len(keys) + ncol - 1) // ncol) * (bh + 26) + self.gap

    def checkboxes(self, n: int) -> None:
        doc, t, f = self.doc, self.t, self.f
        q = T.sentence(t, self.lang, int(t.integers(4, 9)))[:-1] + "?"
        doc.text(self.x0, self.y, q, self.body * 0.95, "value", maxw=self.x1 - self.x0)
        self.y += self.body * 1.7
        opts = [self.lab("yes"), self.lab("no")] + [T.word(t, 3) for _ in range(n - 2)]
        x = self.x0
        for o in opts:
            doc.rect(x, self.y, x + 22, self.y + 22, outline=self.rule, width=2)
            if f.random() < 0.4:
                doc.line(x + 4, self.y + 11, x + 10, self.y + 18, (20, 30, 110), 3)
                doc.line(x + 10, self.y + 18, x + 20, self.y + 2, (20, 30, 110), 3)
            doc.text(x + 32, self.y + 1, o, self.body * 0.9, "value")
            x += 80 + len(o) * self.body * 0.6
        self.y += 40 + self.gap * 0.5

    def section(self, num: int) -> None:
        doc, t, pal = self.doc, self.t, self.st.pal
        txt = f"{num}. " + (T.sentence(t, self.lang, 2)[:-1] if T.is_cjk(self.lang) else T.word(t, 3).upper() + " " + T.word(t, 2).upper())
        if t.random() < 0.5:
            doc.rect(self.x0 - 6, self.y - 4, self.x1 + 6, self.y + self.body * 1.6, fill=D.mix(pal["primary"], (255, 255, 255), 0.8))
        doc.text(self.x0, self.y, txt, self.body * 1.05, "title", pal["primary"])
        self.y += self.body * 2.2

    def signatures(self, n: int) -> None:
        doc, f = self.doc, self.f
        w = (self.x1 - self.x0) / n
        for i in range(n):
            x = self.x0 + i * w
            if f.random() < 0.85:
                assert doc.d is not None
                D.signature(doc.d, doc.box(x + 10, self.y, x + w * 0.75, self.y + 70), f, (20, 30, 110), max(1, doc.p(2.2)))
            doc.line(x, self.y + 75, x + w * 0.8, self.y + 75, self.rule, 1)
            doc.text(x, self.y + 82, f"{self.lab('signature')} / {self.lab('date')}", self.body * 0.8, "label", self.st.pal["label"])
        self.y += 120 + self.gap

    def chart(self, h: float) -> None:
        doc, t, f, pal = self.doc, self.t, self.f, self.st.pal
        n = int(t.integers(6, 14))
        w = (self.x1 - self.x0) * float(t.uniform(0.5, 1.0))
        doc.line(self.x0, self.y + h, self.x0 + w, self.y + h, self.rule, 2)
        doc.line(self.x0, self.y, self.x0, self.y + h, self.rule, 2)
        bw = w / n
        vals = f.uniform(0.2, 1.0, n)
        for i, v in enumerate(vals):
            doc.rect(self.x0 + i * bw + bw * 0.2, self.y + h * (1 - v), self.x0 + (i + 1) * bw - bw * 0.2, self.y + h,
                     fill=pal["accent"] if i != n - 1 else pal["primary"])
        self.y += h + self.gap

    def amount_box(self) -> None:
        doc, t, pal = self.doc, self.t, self.st.pal
        w = float(t.uniform(420, 560))
        x = self.x1 - w if t.random() < 0.6 else self.x0
        h = 130
        doc.rect(x, self.y, x + w, self.y + h, fill=D.mix(pal["accent"], (255, 255, 255), 0.75), outline=pal["primary"], width=2, r=12)
        doc.text(x + 24, self.y + 18, self.lab("amount"), self.body, "label", pal["label"])
        doc.text(x + 24, self.y + 48, f"{self.money(20, 900)} {self.cur}", 42, "title", pal["primary"], maxw=w - 40)
        doc.text(x + w - 24, self.y + 24, f"{self.lab('due')}: {self.date()}", self.body * 0.85, "value", None, "ra", maxw=w * 0.6)
        self.y += h + self.gap

    def footer(self, code: str = "none") -> None:
        doc, t, f = self.doc, self.t, self.f
        if doc.h > 1500:
            self.fill_rest(doc.h - (260 if code != "none" else 160))
        yb = doc.h - float(t.uniform(50, 80))
        doc.line(self.x0, yb - 22, self.x1, yb - 22, D.mix(self.rule, (255, 255, 255), 0.4), 1)
        txt = f"{self.org} · {' · '.join(self.org_addr)} · IBAN {T.letters(t, 2)}{T.digits(t, 18)}"
        doc.text(self.x0, yb - 12, txt, 11, "label", self.st.pal["label"], maxw=self.x1 - self.x0 - 160)
        doc.text(self.x1, yb - 12, f"{self.lab('page')} 1 / {int(f.integers(1, 4))}", 12, "label", self.st.pal["label"], "ra")
        assert doc.d is not None and doc.img is not None
        if code == "barcode":
            D.barcode(doc.d, doc.box(self.x0, yb - 110, self.x0 + 380, yb - 40), f)
        elif code == "qr":
            doc_qs = 130
            D.qr(doc.img, doc.box(self.x1 - doc_qs, yb - 40 - doc_qs, self.x1, yb - 40), T.alnum(f, 60))

    def stamp(self) -> None:
        doc, t, f = self.doc, self.t, self.f
        if self.y > doc.h - 220:
            return
        x = float(t.uniform(self.x0 + 120, self.x1 - 120))
        y = min(doc.h - 240.0, self.y + 60)
        assert doc.img is not None
        col = (170, 40, 40) if t.random() < 0.5 else (40, 60, 160)
        D.stamp(doc.img, (doc.p(x), doc.p(y)), doc.p(float(t.uniform(70, 100))), [self.org.upper(), self.date()],
                self.st.f_title, col, float(f.uniform(-30, 30)), str(t.choice(["circle", "rect"])), alpha=int(f.integers(120, 210)))


def _page_setup(family: str, t: Rng, f: Rng, s: float, size=PAGE) -> tuple[Doc, Page]:
    st = make_style(t, PAGE_LANGS)
    st.extra["bilingual_labels"] = False
    doc = Doc(size[0], size[1], s, t, f, st)
    pal = st.pal
    D.fill(doc.arr, D.mix(pal["stock"], (255, 255, 255), float(t.uniform(0.6, 1.0))))
    if t.random() < 0.2:
        D.guilloche(doc.arr, t, D.mix(pal["pattern"], (255, 255, 255), 0.8), (0, 0, doc.W, doc.H), s, "waves")
    doc.begin_pil()
    if t.random() < 0.15:
        doc.text(doc.w / 2, doc.h / 2, T.word(t, 3).upper(), 150, "title", D.mix(pal["primary"], (255, 255, 255), 0.9), "mm")
    return doc, Page(doc, family)


def render_page(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    doc, P = _page_setup(family, t, f, s)
    R = t.random
    fam = family
    if fam == "bank_statement":
        P.header(); P.title_block(True)
        P.address_block(["account", "customer", "date"] if R() < 0.7 else None)
        P.kv_block(["account", "period", "balance", "balance"][: int(t.integers(2, 5))], int(t.integers(1, 3)))
        cols = [("date", "date"), ("description", "text")] + ([("reference", "num")] if R() < 0.4 else []) + \
            [("debit", "money"), ("credit", "money")] + ([("balance", "money")] if R() < 0.6 else [])
        n = int((doc.h - P.y - 260) / (P.body * 1.9))
        P.table(cols, max(5, min(n, int(t.integers(12, 32)))))
        P.totals(["balance"]); P.footer(str(t.choice(["none", "barcode"])))
    elif fam == "invoice":
        P.header(); P.address_block(["invoice_no", "date", "customer", "due"][: int(t.integers(2, 5))]); P.title_block(False)
        cols = [("qty", "qty"), ("description", "text"), ("unit_price", "money"), ("amount", "money")]
        if R() < 0.4:
            cols.insert(0, ("reference", "num"))
        P.table(cols, int(t.integers(6, 16)), (0.3, 1.0)); P.totals(["subtotal", "tax", "total"])
        P.paragraphs(int(t.integers(1, 3)), lines_range=(1, 3)); P.footer(str(t.choice(["none", "qr", "barcode"])))
        if R() < 0.3:
            P.stamp()
    elif fam == "utility_bill":
        P.header(); P.address_block(["customer", "date", "meter"]); P.title_block(True)
        P.amount_box(); P.kv_block(["meter", "period", "consumption", "customer"], 2)
        P.chart(float(t.uniform(150, 260)))
        P.table([("period", "text"), ("consumption", "num"), ("unit_price", "money"), ("amount", "money")], int(t.integers(3, 7)))
        P.footer("barcode" if R() < 0.6 else "qr")
    elif fam == "application_form":
        P.header(); P.title_block(False); P.paragraphs(1, lines_range=(1, 3))
        for i in range(int(t.integers(2, 4))):
            P.section(i + 1); P.form(int(t.integers(3, 7)), int(t.integers(1, 4)))
            if R() < 0.6:
                P.checkboxes(int(t.integers(2, 5)))
        P.signatures(int(t.integers(1, 3))); P.footer("none")
    elif fam == "letter":
        P.header(); P.address_block(None)
        doc.text(P.x1, P.y, f"{T.city(t, P.lang)}, {P.date()}", P.body, "value", None, "ra"); P.y += P.gap * 2
        doc.text(P.x0, P.y, T.sentence(f, P.lang, 5)[:-1], P.body * 1.05, "title", maxw=P.x1 - P.x0); P.y += P.gap * 2
        P.paragraphs(int(t.integers(3, 6))); P.signatures(1); P.footer("none")
    elif fam == "payslip":
        P.header(); P.title_block(True); P.kv_block(["employee", "personal_no", "period", "account", "address", "date"], 2, True)
        P.table([("description", "text"), ("qty", "qty"), ("amount", "money")], int(t.integers(5, 10)))
        P.table([("description", "text"), ("amount", "money")], int(t.integers(3, 7)))
        P.totals(["gross", "tax", "net"]); P.footer("none")
    elif fam == "tax_form":
        doc.rect(0, 0, doc.w, 60, fill=doc.st.pal["primary"])
        doc.text(P.x0, 30, f"{T.letters(t, 2)} {T.digits(t, 4)}", 26, "title", (255, 255, 255), "lm")
        P.y = 90; P.title_block(False)
        for i in range(int(t.integers(2, 4))):
            P.section(i + 1); P.form(int(t.integers(4, 9)), int(t.integers(2, 4)))
        P.checkboxes(3); P.signatures(1); P.footer("barcode" if R() < 0.5 else "none")
    elif fam == "medical_report":
        P.header(); P.title_block(False); P.kv_block(["patient", "dob", "date", "reference"], 2, True)
        if R() < 0.5:
            P.table([("description", "text"), ("amount", "num"), ("reference", "text")], int(t.integers(5, 12)))
        doc.text(P.x0, P.y, P.lab("diagnosis"), P.body * 1.05, "title"); P.y += P.body * 1.8
        P.paragraphs(int(t.integers(2, 4))); P.signatures(1)
        if R() < 0.6:
            P.stamp()
        P.footer("none")
    elif fam == "delivery_note":
        P.header(); P.address_block(["reference", "date", "customer"]); P.title_block(False)
        P.table([("reference", "num"), ("description", "text"), ("qty", "qty")] + ([("weight", "num")] if R() < 0.5 else []),
                int(t.integers(6, 18)), (0.3, 1.0))
        P.paragraphs(1, lines_range=(1, 3)); P.signatures(2); P.footer(str(t.choice(["barcode", "qr", "none"])))
    elif fam == "contract_page":
        if R() < 0.5:
            P.header()
        else:
            P.y = 110
        P.title_block(False); P.paragraphs(1, lines_range=(2, 4))
        P.paragraphs(int(t.integers(3, 6)), numbered=True)
        if P.y < doc.h - 320:
            P.signatures(2)
        P.footer("none")
    elif fam == "table_report":
        P.header(); P.title_block(True)
        if R() < 0.7:
            P.chart(float(t.uniform(180, 320)))
        ncol = int(t.integers(4, 8))
        cols = [("description", "text")] + [(str(k), str(v)) for k, v in zip(
            t.choice(["amount", "total", "balance", "qty", "consumption", "period", "reference"], size=ncol - 1),
            t.choice(["num", "money", "qty"], size=ncol - 1))]
        n = int((doc.h - P.y - 240) / (P.body * 1.9))
        P.table(cols, max(5, min(n, int(t.integers(10, 30)))))
        P.paragraphs(1, lines_range=(1, 3)); P.footer("none")
    else:
        raise KeyError(f"render_page: no page layout for family {family!r}")
    return doc.bgr()


def render_certificate(family: str, t: Rng, f: Rng, s: float) -> np.ndarray:
    st = make_style(t, PAGE_LANGS)
    st.extra["bilingual_labels"] = False
    w, h = 1754, 1240
    doc = Doc(w, h, s, t, f, st)
    pal = st.pal
    D.fill(doc.arr, D.mix(pal["stock"], (255, 255, 255), float(t.uniform(0.2, 0.8))))
    bm = float(t.uniform(30, 70))
    D.guilloche(doc.arr, t, D.mix(pal["pattern"], pal["stock"], 0.3), (0, 0, doc.W, doc.H), s, str(t.choice(["rosette", "waves", "mesh"])))
    inner = doc.box(bm + 40, bm + 40, w - bm - 40, h - bm - 40)
    doc.arr[inner[1]:inner[3], inner[0]:inner[2]] = D.mix(pal["stock"], (255, 255, 255), 0.85)
    doc.begin_pil()
    doc.rect(bm, bm, w - bm, h - bm, outline=pal["primary"], width=float(t.uniform(3, 10)))
    doc.rect(bm + 40, bm + 40, w - bm - 40, h - bm - 40, outline=pal["accent"], width=2)
    assert doc.d is not None and doc.img is not None
    D.emblem(doc.d, (doc.p(w / 2), doc.p(230)), doc.p(70), t, pal["primary"], pal["accent"])
    ttl = T.title(family, st.lang, t)
    doc.text(w / 2, 330, ttl, float(t.uniform(60, 90)), "title", pal["primary"], "ma", maxw=w - 400)
    doc.text(w / 2, 470, T.sentence(t, st.lang, 5)[:-1], 28, "label", pal["label"], "ma", maxw=w - 400)
    it = __import__("encoders.training.synth.fonts", fromlist=["list_fonts"]).list_fonts("latin_italic")
    fi = it[int(t.integers(len(it)))]
    name = T.full_name(f, st.lang)
    fnt = doc.font_for(name, "value", 72) if T.is_cjk(st.lang) else doc.font(fi, 72)
    doc.d.text((doc.p(w / 2), doc.p(540)), name, font=fnt, fill=pal["ink"], anchor="ma")
    doc.line(w / 2 - 450, 640, w / 2 + 450, 640, pal["accent"], 2)
    y = 680
    from .pages import wrap as _wrap
    for ln in _wrap(doc, T.sentence(f, st.lang, 24), 26, "value", 1000)[:3]:
        doc.text(w / 2, y, ln, 26, "value", None, "ma")
        y += 40
    for i, x in enumerate((w * 0.25, w * 0.75)):
        D.signature(doc.d, doc.box(x - 180, 900, x + 180, 990), f, (20, 30, 110), max(1, doc.p(2.5)))
        doc.line(x - 200, 1000, x + 200, 1000, pal["ink"], 1)
        doc.text(x, 1010, T.full_name(t, st.lang) if i else T.date(f, "dMy", 2015, 2026), 20, "label", pal["label"], "ma")
    D.stamp(doc.img, (doc.p(w / 2), doc.p(980)), doc.p(95), [T.org_name(t, st.lang, "school").upper(), T.digits(t, 4)],
            st.f_title, D.mix(pal["accent"], (150, 20, 20), 0.5), float(f.uniform(-15, 15)), "circle", 200)
    doc.end_pil()
    return doc.bgr()
