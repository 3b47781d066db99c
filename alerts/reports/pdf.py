"""The report as PDF (fpdf2), A4, with a CJK font from Debian's packages embedded (subset, :mod:`.fonts`)
so that it reads the same on any machine. Charts are drawn as vector bars, so their labels stay text.
"""
from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

from .fonts import font_for, used_chars
from .sections import Chart, L, Section, Table

INK, MUTED, RULE, BAR, LIMIT = (33, 37, 41), (110, 117, 125), (206, 212, 218), (54, 110, 180), (200, 60, 50)


class _Doc(FPDF):
    def __init__(self, title: str, checksum_note: str, font: tuple[str, int]):
        super().__init__(orientation="P", unit="mm", format="A4")
        self.title_text, self.note = title, checksum_note
        path, index = font
        self.add_font("cjk", "", path, collection_font_number=index)
        # the subset embedded is written without recomputing every glyph's bounding box (a pure-Python pass
        # over the outlines): PDF viewers take the box from the font descriptor fpdf2 wrote
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
    doc = _Doc(title.text(lang), "StationWatch", font_for(used_chars(title, subtitle, sections)))
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


LINE, PAD, BASELINE = 3.6, 0.9, 2.6  # mm: a table's line height, cell padding, a line's baseline
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
        for k, line in enumerate(lines):  # text() at the baseline: the lines are already cut to the cell
            if line:
                doc.text(x + PAD, y0 + PAD + k * LINE + BASELINE, line)
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
