"""The report as PDF (fpdf2), A4, with a CJK font from Debian's packages embedded (subset) so that it
reads the same on any machine. Charts are drawn as vector bars, so their labels stay text.

Fonts looked for, in order: Noto Sans CJK SC (``fonts-noto-cjk``), WenQuanYi Zen Hei
(``fonts-wqy-zenhei``); ``STATIONWATCH_CJK_FONT=/path/font.ttc[:index]`` names another.

A CJK font has ~45,000 glyphs, and reading its tables costs fpdf2 about a second per document. So a
working copy holding GB 2312 (every character of everyday Chinese), Latin and the symbols the report uses
is made once and kept in ``~/.cache/stationwatch/fonts`` (``STATIONWATCH_CACHE`` moves it); a document with a
character outside it (a rare character in a person's name) is drawn with the full font.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from fpdf import FPDF

from ..records import AlertError
from .sections import Chart, L, Section, Table

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
    key = hashlib.sha256(f"1 {path} {index} {st.st_size} {st.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = Path(os.environ.get("STATIONWATCH_CACHE") or Path.home() / ".cache" / "stationwatch") / "fonts"
    target = folder / f"{Path(path).stem}-{index}-{key}.otf"
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
            with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as tmp:
                font.save(tmp.name)
            os.replace(tmp.name, target)
        return str(target), frozenset(TTFont(str(target), lazy=True).getBestCmap())
    except OSError as exc:
        log.warning("no working copy of the report font (%s): every document uses the full font", exc)
        return None


def _font_for(chars: set[int]) -> tuple[str, int]:
    path, index = cjk_font()
    working = working_font(path, index)
    if working is not None and chars <= working[1]:
        return working[0], 0
    return path, index


def _chars(title: L, subtitle: str, sections: list[Section]) -> set[int]:
    texts = [title.zh, title.en, subtitle, "（无） / (none)0123456789/ ·StationWatch"]
    for s in sections:
        texts += [s.title.zh, s.title.en, *s.lines]
        for t in s.tables:
            texts += [c.zh + c.en for c in t.columns] + [str(v) for row in t.rows for v in row]
        if s.chart is not None:
            texts += [s.chart.title.zh, s.chart.title.en, s.chart.unit, *map(str, s.chart.labels)]
    return {ord(ch) for text in texts for ch in text}


class _Doc(FPDF):
    def __init__(self, title: str, checksum_note: str, font: tuple[str, int]):
        super().__init__(orientation="P", unit="mm", format="A4")
        self.title_text, self.note = title, checksum_note
        path, index = font
        self.add_font("cjk", "", path, collection_font_number=index)
        # the subset embedded is written without recomputing every glyph's bounding box (pure-Python CFF
        # interpretation, ~1 ms a glyph): PDF viewers take the box from the font descriptor fpdf2 wrote
        self.fonts["cjk"].ttfont.recalcBBoxes = False
        self.set_font("cjk", size=9)
        self.set_auto_page_break(True, margin=16)
        self.set_margins(14, 14, 14)
        self.alias_nb_pages()

    def footer(self):
        self.set_y(-11)
        self.set_font("cjk", size=7)
        self.set_text_color(*MUTED)
        self.cell(0, 4, f"{self.title_text} · {self.note}", align="L")
        self.set_x(-40)
        self.cell(26, 4, f"{self.page_no()}/{{nb}}", align="R")
        self.set_text_color(*INK)


def render(path: Path, title: L, subtitle: str, sections: list[Section], lang: str = "zh") -> None:
    doc = _Doc(title.text(lang), "StationWatch", _font_for(_chars(title, subtitle, sections)))
    doc.set_title(title.text(lang))
    doc.set_creator("StationWatch")
    doc.add_page()
    doc.set_font("cjk", size=16)
    doc.multi_cell(0, 8, title.zh if lang == "zh" else title.en, new_x="LMARGIN", new_y="NEXT")
    doc.set_font("cjk", size=10)
    doc.set_text_color(*MUTED)
    doc.multi_cell(0, 5, (title.en if lang == "zh" else title.zh) + "\n" + subtitle, new_x="LMARGIN", new_y="NEXT")
    doc.set_text_color(*INK)
    doc.ln(2)
    for section in sections:
        _section(doc, section, lang)
    doc.output(str(path))


def _section(doc: _Doc, s: Section, lang: str) -> None:
    if doc.will_page_break(45):  # a heading is never left alone at the foot of a page
        doc.add_page()
    doc.ln(2)
    doc.set_font("cjk", size=12)
    doc.set_draw_color(*RULE)
    doc.cell(0, 7, s.title.text(lang), new_x="LMARGIN", new_y="NEXT", border="B")
    doc.ln(1)
    doc.set_font("cjk", size=9)
    for line in s.lines:
        doc.multi_cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    if s.chart is not None and s.chart.values and any(s.chart.values):
        _chart(doc, s.chart, lang)
    for table in s.tables:
        _table(doc, table, lang)


LINE, PAD = 3.6, 0.9  # mm: a table's line height and cell padding
HEAD_FILL = (235, 239, 243)


def _table(doc: _Doc, t: Table, lang: str) -> None:
    """A grid of cells with rules between rows and the header repeated after a page break. A cell's text
    is wrapped only when it does not fit on one line (fpdf2's own table lays out every cell as a paragraph,
    several times slower, and a report is mostly short cells)."""
    doc.ln(1)
    if not t.rows:
        doc.set_text_color(*MUTED)
        doc.cell(0, 5, L("（无）", "(none)").text(lang), new_x="LMARGIN", new_y="NEXT")
        doc.set_text_color(*INK)
        return
    doc.set_font("cjk", size=7.5)
    weights = t.widths or [1] * len(t.columns)
    widths = [doc.epw * w / sum(weights) for w in weights]
    head = _lines(doc, [c.text(lang, "\n") for c in t.columns], widths)
    _row(doc, head, widths, fill=True)
    for values in t.rows:
        lines = _lines(doc, ["" if v is None else str(v) for v in values], widths)
        if doc.will_page_break(len(max(lines, key=len)) * LINE + 2 * PAD):
            doc.add_page()
            _row(doc, head, widths, fill=True)
        _row(doc, lines, widths)
    doc.set_font("cjk", size=9)
    doc.ln(1)


def _lines(doc: _Doc, texts: list[str], widths: list[float]) -> list[list[str]]:
    out = []
    for text, width in zip(texts, widths):
        room = width - 2 * PAD
        lines = []
        for part in text.split("\n"):
            if doc.get_string_width(part) <= room:
                lines.append(part)
            else:
                lines += doc.multi_cell(room, LINE, part, dry_run=True, output="LINES")
        out.append(lines)
    return out


def _row(doc: _Doc, cells: list[list[str]], widths: list[float], fill: bool = False) -> None:
    height = max(len(c) for c in cells) * LINE + 2 * PAD
    x0, y0 = doc.l_margin, doc.get_y()
    if fill:
        doc.set_fill_color(*HEAD_FILL)
        doc.rect(x0, y0, doc.epw, height, style="F")
        doc.set_fill_color(255, 255, 255)
    x = x0
    for lines, width in zip(cells, widths):
        for k, line in enumerate(lines):
            doc.set_xy(x + PAD, y0 + PAD + k * LINE)
            doc.cell(width - 2 * PAD, LINE, line)
        x += width
    doc.set_draw_color(*RULE)
    doc.line(x0, y0 + height, x0 + doc.epw, y0 + height)
    doc.set_xy(x0, y0 + height)


def _chart(doc: _Doc, c: Chart, lang: str) -> None:
    """Horizontal bars, one per label, with the value at the end (and a rule's line when there is one)."""
    bars = list(zip(c.labels, c.values))[:20]
    height = 6 + 5 * len(bars)
    if doc.will_page_break(height + 4):
        doc.add_page()
    x0, y0 = doc.l_margin, doc.get_y() + 1
    label_w, width = 45, doc.epw - 45 - 18
    top = max([v for _, v in bars] + [c.limit or 0]) or 1
    doc.set_font("cjk", size=8)
    doc.set_text_color(*MUTED)
    doc.text(x0, y0 + 3, c.title.text(lang) + (f" ({c.unit})" if c.unit else ""))
    doc.set_text_color(*INK)
    for i, (label, value) in enumerate(bars):
        y = y0 + 5 + 5 * i
        doc.set_xy(x0, y)
        doc.cell(label_w - 2, 4, str(label)[:24], align="R")
        doc.set_fill_color(*BAR)
        doc.rect(x0 + label_w, y + 0.6, max(0.3, width * value / top), 2.8, style="F")
        doc.text(x0 + label_w + width * value / top + 1.5, y + 3.2, f"{value:g}" if value == int(value) else f"{value:.1f}")
    if c.limit:
        doc.set_draw_color(*LIMIT)
        lx = x0 + label_w + width * c.limit / top
        doc.line(lx, y0 + 4, lx, y0 + 5 + 5 * len(bars))
        doc.set_text_color(*LIMIT)
        doc.text(lx + 0.8, y0 + 4, f"{c.limit:g}")
        doc.set_text_color(*INK)
    doc.set_fill_color(255, 255, 255)
    doc.set_draw_color(*RULE)
    doc.set_y(y0 + height + 1)
