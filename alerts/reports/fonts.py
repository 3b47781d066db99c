"""The CJK font the PDF embeds, from Debian's packages: Noto Sans CJK SC (``fonts-noto-cjk``), else
WenQuanYi Zen Hei (``fonts-wqy-zenhei``); ``STATIONWATCH_CJK_FONT=/path/font.ttc[:index]`` names another.

A CJK font has ~45,000 glyphs, and reading its tables costs fpdf2 about a second per document. So a
working copy holding GB 2312 (every character of everyday Chinese), Latin and the symbols the report uses,
with TrueType outlines, is made once (~20 s) and kept in ``~/.cache/stationwatch/fonts`` (``STATIONWATCH_CACHE``
moves it); a document with a character outside it (a rare character in a person's name) is drawn with the
full font.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from ..records import AlertError
from .sections import L, Section

FONTS = (("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # index 2: Simplified Chinese forms
         ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0))
INK, MUTED, RULE, BAR, LIMIT = (33, 37, 41), (110, 117, 125), (206, 212, 218), (54, 110, 180), (200, 60, 50)


class FontMissing(AlertError):
    """No CJK font is installed; the message says which Debian package to install."""


def cjk_font() -> tuple[str, int]:
    named = os.environ.get("STATIONWATCH_CJK_FONT")
    if named:
        path, _, index = named.partition(":")
        return path, int(index or 0)
    for path, index in FONTS:
        if Path(path).exists():
            return path, index
    raise FontMissing("没有中文字体：请安装 fonts-noto-cjk（`make` 会安装）/ no CJK font: install the Debian package "
                      "fonts-noto-cjk (`make` installs it)")


log = logging.getLogger(__name__)
_EXTRA = [(0x20, 0x7F), (0xA0, 0x250), (0x2000, 0x2070), (0x2100, 0x2800), (0x3000, 0x3040), (0xFF00, 0xFFF0)]


def _gb2312() -> set[int]:
    out = {c for a, b in _EXTRA for c in range(a, b)}
    for hi in range(0xA1, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                out.update(ord(ch) for ch in bytes((hi, lo)).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    return out


@lru_cache(maxsize=4)
def working_font(path: str, index: int) -> tuple[str, frozenset[int]] | None:
    """The cached GB 2312 copy of a font (made once), with the characters it holds; None if it cannot be made."""
    from fontTools import subset
    from fontTools.ttLib import TTFont
    st = os.stat(path)
    key = hashlib.sha256(f"2 {path} {index} {st.st_size} {st.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = Path(os.environ.get("STATIONWATCH_CACHE") or Path.home() / ".cache" / "stationwatch") / "fonts"
    target = folder / f"{Path(path).stem}-{index}-{key}.ttf"
    try:
        if not target.exists():
            log.info("making the report font's working copy once: %s", target)
            folder.mkdir(parents=True, exist_ok=True)
            font = TTFont(path, fontNumber=index, lazy=True)
            options = subset.Options()
            options.layout_features, options.name_IDs, options.notdef_outline, options.hinting = [], ["*"], True, False
            cut = subset.Subsetter(options)
            cut.populate(unicodes=_gb2312())
            cut.subset(font)
            if "CFF " in font:
                truetype(font)
            with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as tmp:
                font.save(tmp.name)
            os.replace(tmp.name, target)
        return str(target), frozenset(TTFont(str(target), lazy=True).getBestCmap())
    except OSError as exc:
        log.warning("no working copy of the report font (%s): every document uses the full font", exc)
        return None


def truetype(font) -> None:
    """Turn a CFF font's cubic outlines into TrueType quadratic ones (within one font unit), in place: fpdf2
    then embeds a subset by copying glyph data instead of interpreting every CFF charstring, ~4× faster."""
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import newTable
    order, glyphs = font.getGlyphOrder(), font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder, glyf.glyphs = order, {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        glyf[name] = pen.glyph()
    font["glyf"], font["loca"] = glyf, newTable("loca")
    font["head"].indexToLocFormat, font["head"].glyphDataFormat = 1, 0
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for field in ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs",
                  "maxStackElements", "maxSizeOfInstructions", "maxComponentElements"):
        setattr(maxp, field, 1 if field == "maxZones" else 0)
    post = font["post"]
    post.formatType, post.extraNames, post.mapping, post.glyphOrder = 2.0, [], {}, order
    for table in ("CFF ", "VORG"):
        if table in font:
            del font[table]
    font.sfntVersion = "\0\1\0\0"


def font_for(chars: set[int]) -> tuple[str, int]:
    """The font a document with ``chars`` is drawn with: the working copy when it holds them all."""
    path, index = cjk_font()
    working = working_font(path, index)
    if working is not None and chars <= working[1]:
        return working[0], 0
    return path, index


def used_chars(title: L, subtitle: str, sections: list[Section]) -> set[int]:
    texts = [title.zh, title.en, subtitle, "（无） / (none)0123456789/ ·StationWatch"]
    for s in sections:
        texts += [s.title.zh, s.title.en, *s.lines]
        for t in s.tables:
            texts += [c.zh + c.en for c in t.columns] + [str(v) for row in t.rows for v in row]
        if s.chart is not None:
            texts += [s.chart.title.zh, s.chart.title.en, s.chart.unit, *map(str, s.chart.labels)]
    return {ord(ch) for text in texts for ch in text}
