"""`stationwatch dashboards render`: a dashboard drawn as a PNG from its real query results — the
panels where the dashboard places them, time series with the rules' thresholds, state timelines in
the meanings' colours, stats and tables — for reports and for the README, where no Grafana runs.

It draws what the queries answered (dashboards/runner.py), not what Grafana would paint: Grafana's
own look differs. Chinese text needs a CJK font (Debian: fonts-wqy-zenhei or fonts-noto-cjk).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .runner import Runner, TargetResult

COLOURS = {"red": "#e02f44", "orange": "#ff9830", "yellow": "#fade2a", "green": "#56a64b", "blue": "#3274d9",
           "#8e8e8e": "#8e8e8e"}
CJK_FONTS = ("WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC")
UNIT_LABEL = {"celsius": "°C", "percent": "%", "pressurebar": "bar", "s": "s"}
ROW_IN = 0.42  # inches per Grafana grid row


class RenderError(Exception):
    pass


def _font() -> str:
    from matplotlib import font_manager
    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in names:
            return name
    raise RenderError("no CJK font found: install fonts-wqy-zenhei (apt-get install fonts-wqy-zenhei) / 未找到中文字体")


def _display(panel: dict[str, Any]) -> dict[str, str]:
    return {o["matcher"]["options"]: o["properties"][0]["value"] for o in panel.get("fieldConfig", {}).get("overrides", [])}


def _steps(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    return [(s.get("value"), COLOURS.get(s["color"], s["color"])) for s in steps]


def _colour_of(value: float, panel: dict[str, Any]) -> str:
    for m in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        o = m.get("options", {})
        if o.get("from", float("-inf")) <= value <= o.get("to", float("inf")):
            return COLOURS.get(o["result"]["color"], o["result"]["color"])
    colour = "#8e8e8e"
    for threshold, c in _steps(panel):
        if threshold is None or value >= threshold:
            colour = c
    return colour


def _times(series, tz):
    return [datetime.fromtimestamp(row[0] / 1000, tz) for row in series.values]


def _timeseries(ax, panel, results: list[TargetResult], tz) -> None:
    names = _display(panel)
    for r in results:
        for s in r.series:
            ax.plot(_times(s, tz), [v if v is not None else float("nan") for v in s.column()],
                    label=names.get(s.name, s.name), linewidth=1.4, marker="o" if len(s.values) < 4 else None,
                    markersize=3)
    for value, colour in _steps(panel)[1:]:
        ax.axhline(value, color=colour, linestyle="--", linewidth=1)
    ax.set_ylabel(UNIT_LABEL.get(panel.get("fieldConfig", {}).get("defaults", {}).get("unit", ""), ""))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def _state(ax, panel, results: list[TargetResult], tz) -> None:
    import matplotlib.dates as mdates
    names, rows = _display(panel), [s for r in results for s in r.series]
    for i, s in enumerate(rows):
        times = _times(s, tz)
        step = times[1] - times[0] if len(times) > 1 else timedelta(seconds=10)
        for j, v in enumerate(s.column()):
            if v is None:
                continue
            end = times[j + 1] if j + 1 < len(times) else times[j] + step
            ax.barh(i, mdates.date2num(end) - mdates.date2num(times[j]), left=mdates.date2num(times[j]),
                    color=_colour_of(v, panel), height=0.8)
    ax.set_yticks(range(len(rows)), [names.get(s.name, s.name) for s in rows], fontsize=6)
    ax.invert_yaxis()
    ax.xaxis_date(tz)


def _stat(ax, panel, results: list[TargetResult], tz) -> None:
    from matplotlib.patches import Rectangle
    names, cells = _display(panel), [s for r in results for s in r.series]
    ax.axis("off")
    for i, s in enumerate(cells):
        last = next((v for v in reversed(s.column()) if v is not None), None)
        x = (i + 0.5) / max(len(cells), 1)
        ax.add_patch(Rectangle(
            (i / len(cells) + 0.01, 0.05), 1 / len(cells) - 0.02, 0.9, transform=ax.transAxes,
            color=_colour_of(last, panel) if last is not None else "#cccccc"))
        ax.text(x, 0.55, "—" if last is None else f"{last:.0f}", ha="center", va="center", fontsize=16,
                color="white", transform=ax.transAxes, weight="bold")
        ax.text(x, 0.2, names.get(s.name, s.name), ha="center", va="center", fontsize=6, color="white",
                transform=ax.transAxes)


def _table(ax, panel, results: list[TargetResult], tz) -> None:
    ax.axis("off")
    series = [s for r in results for s in r.series]
    if not series:
        return
    s = series[0]
    rows = [[datetime.fromtimestamp(v[0] / 1000, tz).strftime("%H:%M:%S"), *[str(x)[:48] for x in v[1:]]]
            for v in s.values[-6:]]
    table = ax.table(cellText=rows, colLabels=["time", *s.columns[1:]], loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(6)


DRAW = {"timeseries": _timeseries, "state-timeline": _state, "stat": _stat, "table": _table}


def render(model: dict[str, Any], runner: Runner, path: Path, timezone: str = "Asia/Shanghai") -> Path:
    """Draw every panel of ``model`` with the answers ``runner`` gets; write a PNG to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["font.sans-serif"] = [_font(), "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    tz = ZoneInfo(timezone)
    items = model["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in items)
    fig = plt.figure(figsize=(18, height * ROW_IN + 0.6))
    grid = fig.add_gridspec(height, 24, hspace=1.6, wspace=3.0)
    fig.suptitle(model["title"], fontsize=13, x=0.01, ha="left")
    for p in items:
        g = p["gridPos"]
        if p["type"] == "row":
            band = fig.add_subplot(grid[g["y"]:g["y"] + 1, :])
            band.axis("off")
            band.text(0, 0, p["title"], fontsize=10, weight="bold", transform=band.transAxes)
            continue
        ax = fig.add_subplot(grid[g["y"]:g["y"] + g["h"], g["x"]:g["x"] + g["w"]])
        ax.set_title(p["title"], fontsize=8, loc="left")
        ax.tick_params(labelsize=6)
        DRAW.get(p["type"], _table)(ax, p, runner.run(p), tz)
        if p["type"] in ("timeseries", "state-timeline"):  # one time axis for the whole dashboard
            ax.set_xlim(datetime.fromtimestamp(runner.range.from_ms / 1000, tz),
                        datetime.fromtimestamp(runner.range.to_ms / 1000, tz))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
