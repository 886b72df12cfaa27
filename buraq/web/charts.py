"""Charts as SVG text, drawn on the server: no charting library, nothing fetched at run time.

Pure functions from numbers to markup, so they are tested without a browser and cost the
worker one string join per chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 10, 22, 22
PALETTE = ("#4fc3f7", "#ef5350", "#ffb74d", "#81c784", "#ba68c8", "#e0e0e0")


def nice_ceiling(value: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at least ``value`` (1 for an empty chart)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 10 ** -_leading_zeros(value)
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _leading_zeros(value: float) -> int:
    count = 0
    while value < 1:
        value *= 10
        count += 1
    return count


def _label(value: float, unit: str) -> str:
    """At most about seven characters, so an axis label fits the left margin (a clipped "250,000"
    reads as "50,000"): 2,500 then 25k and 2.5M; milliseconds from 10,000 on as seconds."""
    if unit == "ms" and value >= 10_000:
        return f"{_short(value / 1000)}s"
    if value >= 1e6:
        return f"{_short(value / 1e6)}M{unit}"
    if value >= 1e4:
        return f"{_short(value / 1e3)}k{unit}"
    return f"{_short(value)}{unit}"


def _short(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def line_chart(title: str, times: Sequence[float], lines: dict[str, Sequence[float | None]], unit: str = "",
               colors: Sequence[str] = PALETTE, window: float | None = None) -> str:
    """A multi-line chart over time; gaps (None) break a line rather than drawing it as zero.

    With ``window`` the time axis always spans that many seconds up to the newest point, so the
    scale holds still while history fills in.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for series in lines.values() for v in series if v is not None]
    top = nice_ceiling(max(values, default=0.0))
    start, end = (times[0], times[-1]) if len(times) > 1 else (0.0, 1.0)
    if window is not None and times:
        start, end = times[-1] - window, times[-1]
    span = (end - start) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" class="chart">',
             f'<text x="{LEFT}" y="14" class="chart-title">{escape(title)}</text>']
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
                     f'{escape(_label(top * fraction, unit))}</text>')
    if len(times) > 1:
        parts.append(f'<text x="{LEFT}" y="{HEIGHT - 6}" class="axis">-{span:.0f}s</text>'
                     f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end" class="axis">now</text>')
    legend_x = LEFT + 7 * len(title) + 18  # after the title (about 7 px a character at this size)
    for index, (name, series) in enumerate(lines.items()):
        color = colors[index % len(colors)]
        for run in _runs(times, series):
            points = " ".join(f"{LEFT + plot_w * (t - start) / span:.1f},{TOP + plot_h * (1 - v / top):.1f}"
                              for t, v in run)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{points}" '
                         f'data-series="{escape(name)}"/>')
        parts.append(f'<rect x="{legend_x}" y="6" width="10" height="10" fill="{color}"/>'
                     f'<text x="{legend_x + 14}" y="15" class="legend">{escape(name)}</text>')
        legend_x += 14 + 7 * len(name) + 16
    parts.append("</svg>")
    return "".join(parts)


def _runs(times: Sequence[float], series: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    """Stretches of consecutive known values; one point alone is drawn as a dot-length line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for t, value in zip(times, series):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((t, value))
    return [run if len(run) > 1 else run * 2 for run in runs if run]


def bar_chart(title: str, bars: Sequence[tuple[str, float]], unit: str = "") -> str:
    """Horizontal bars, for benchmark results."""
    row = 26
    height = TOP + row * max(1, len(bars)) + 6
    label_w = 190
    top = nice_ceiling(max((value for _, value in bars), default=0.0))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
             f'aria-label="{escape(title)}" class="chart">',
             f'<text x="4" y="14" class="chart-title">{escape(title)}</text>']
    for index, (label, value) in enumerate(bars):
        y = TOP + row * index
        width = (WIDTH - label_w - 90) * value / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="axis">{escape(label)}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="16" '
                     f'fill="{PALETTE[index % len(PALETTE)]}"/>'
                     f'<text x="{label_w + width + 6:.1f}" y="{y + 15}" class="legend">'
                     f'{escape(_label(value, unit))}</text>')
    parts.append("</svg>")
    return "".join(parts)
