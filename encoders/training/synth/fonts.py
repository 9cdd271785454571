"""System font discovery and a cached ImageFont loader.

Why: the generator must render Latin and CJK text with many different typefaces
so that a template's look comes from its fonts too; loading a FreeType face is
slow (CJK .ttc files are ~20 MB), so faces are cached by (path, size, index).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from PIL import ImageFont

FONT_ROOTS = ("/usr/share/fonts", "/usr/local/share/fonts")

# Latin text faces (file-name prefixes); the big Noto directory also holds
# hundreds of non-Latin scripts, so we whitelist instead of taking everything.
_LATIN_PREFIXES = (
    "DejaVuSans", "DejaVuSerif", "DejaVuSansCondensed", "Liberation", "NotoSans-", "NotoSerif-",
    "NotoSansMono-", "FreeSans", "FreeSerif", "FreeMono", "OpenSans", "Roboto", "Carlito", "Caladea",
    "NimbusSans", "NimbusRoman", "NimbusMonoPS", "URWBookman", "URWGothic", "C059", "P052",
    "Cantarell", "LinLibertine", "LinBiolinum", "EBGaramond", "Lato", "FiraCode", "Inconsolata",
)
# Faces lacking common Latin-1 glyphs / punctuation (symbol or initials fonts).
_BROKEN = ("EBGaramond12-Bold", "LinBiolinum_K", "LinLibertine_I")
_MONO_PREFIXES = ("DejaVuSansMono", "LiberationMono", "FreeMono", "NimbusMonoPS", "FiraCode",
                  "Inconsolata", "NotoSansMono-")
# Faces that cover Han + kana + hangul (usable for any CJK text).
_CJK_ALL = ("NotoSansCJK", "NotoSerifCJK", "wqy-zenhei")
_SCRIPT_EXTRA = {
    "zh": ("uming", "ukai", "wqy-microhei"),
    "ja": ("ipag", "ipam", "ipagp", "ipamp", "fonts-japanese"),
    "ko": ("Nanum",),
}
_FONT_EXT = (".ttf", ".otf", ".ttc")


@functools.lru_cache(maxsize=1)
def _all_font_files() -> tuple[str, ...]:
    out: list[str] = []
    for root in FONT_ROOTS:
        if not os.path.isdir(root):
            continue
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                if f.lower().endswith(_FONT_EXT):
                    out.append(os.path.join(dirpath, f))
    # de-duplicate by real path, stable order
    seen: set[str] = set()
    uniq = []
    for p in sorted(out):
        rp = os.path.realpath(p)
        if rp not in seen:
            seen.add(rp)
            uniq.append(rp)
    return tuple(uniq)


def _match(prefixes: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[str]:
    res = []
    for p in _all_font_files():
        name = Path(p).name
        if name.startswith(prefixes) and not any(x in name for x in exclude):
            res.append(p)
    return sorted(set(res))


@functools.lru_cache(maxsize=None)
def _list(script: str) -> tuple[str, ...]:
    s = script.lower()
    if s == "latin":
        return tuple(_match(_LATIN_PREFIXES, exclude=("Oblique", "Italic", "ExtraLight", "Thin", "Hairline") + _BROKEN
                            + ("Inconsolata",)))
    if s == "latin_italic":
        return tuple(p for p in _match(_LATIN_PREFIXES, exclude=_BROKEN) if "Italic" in p or "Oblique" in p)
    if s == "mono":
        return tuple(_match(_MONO_PREFIXES, exclude=("Oblique", "Italic")))
    if s == "cjk":
        return tuple(_match(_CJK_ALL))
    if s in _SCRIPT_EXTRA:
        return tuple(_match(_CJK_ALL) + _match(_SCRIPT_EXTRA[s]))
    raise ValueError(f"list_fonts: unknown script {script!r}; use latin, latin_italic, mono, cjk, zh, ja, ko")


def list_fonts(script: str) -> list[str]:
    """Font file paths usable for `script` ("latin", "latin_italic", "mono", "cjk", "zh", "ja", "ko").

    "cjk" lists faces covering Chinese, Japanese and Korean at once; "zh"/"ja"/"ko"
    add language-specific faces. .ttc collections are returned as plain paths
    (face index 0 covers the needed glyphs).
    """
    return list(_list(script))


def is_bold(path: str) -> bool:
    n = Path(path).name.lower()
    return "bold" in n or "black" in n or "heavy" in n or n.endswith("b.ttf") and "nanum" in n


@functools.lru_cache(maxsize=4096)
def get_font(path: str, size: int, index: int = 0) -> ImageFont.FreeTypeFont:
    """Cached FreeType face; size in pixels (clamped to >= 6)."""
    try:
        return ImageFont.truetype(path, max(6, int(size)), index=index)
    except OSError as e:  # pragma: no cover - depends on the system
        raise OSError(f"cannot load font file {path} (size {size}, index {index}): {e}") from e
