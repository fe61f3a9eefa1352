"""Charts as server-rendered SVG (issue 18 item 8): bars for counts, a line for shares against the plan's target,
horizontal bars for the backlog. No script, no inline style (the pages' CSP): presentation attributes and the
classes in static/linli.css. Each chart is an image with a title and a description for screen readers; the page
prints the same numbers as a table beside it, and as CSV. The viewBox scales to the phone's width."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 360, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 12, 28  # room for the scale on the left, the months below
_AXIS = f'<line class="chart-axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"/>'


def _frame(chart_id: str, title: str, description: str, body: str, height: int = HEIGHT) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" preserveAspectRatio="xMidYMid meet">'
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(description)}</desc>'
        f"{body}</svg>")


def _month_label(month: str, index: int) -> str:
    """"MM" under each bar, "YYYY-MM" under the first and each January."""
    return month if index == 0 or month.endswith("-01") else month[5:]


def _x_axis(months: Sequence[str], step: float) -> str:
    skip = 1 if len(months) <= 12 else 2 if len(months) <= 24 else 3
    return "".join(
        f'<text class="chart-label" x="{LEFT + step * (i + 0.5):.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
        f"{escape(_month_label(m, i))}</text>" for i, m in enumerate(months) if i % skip == 0)


def month_bars(chart_id: str, title: str, description: str, months: Sequence[str], values: Sequence[int]) -> Markup:
    """One bar per month, scaled to the largest."""
    top = max(values, default=0) or 1
    step = (WIDTH - LEFT - RIGHT) / max(len(months), 1)
    plot = HEIGHT - TOP - BOTTOM
    bars = "".join(
        f'<rect class="chart-bar" x="{LEFT + step * i + step * 0.15:.1f}" y="{TOP + plot * (1 - v / top):.1f}" '
        f'width="{step * 0.7:.1f}" height="{plot * v / top:.1f}"><title>{escape(m)}: {v}</title></rect>'
        for i, (m, v) in enumerate(zip(months, values, strict=True)))
    scale = (f'<text class="chart-label" x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end">{top}</text>'
             f'<text class="chart-label" x="{LEFT - 4}" y="{HEIGHT - BOTTOM}" text-anchor="end">0</text>'
             + _AXIS)
    return _frame(chart_id, title, description, scale + bars + _x_axis(months, step))


def share_line(chart_id: str, title: str, description: str, months: Sequence[str], shares: Sequence[float | None],
               target: float, target_label: str) -> Markup:
    """Shares (0–1) month by month as a line with dots (a month without cases leaves a gap), and the target as a
    dashed line."""
    step = (WIDTH - LEFT - RIGHT) / max(len(months), 1)
    plot = HEIGHT - TOP - BOTTOM

    def y(share: float) -> float:
        return TOP + plot * (1 - share)

    runs: list[list[str]] = [[]]
    dots = []
    for i, (m, share) in enumerate(zip(months, shares, strict=True)):
        if share is None:
            runs.append([])
            continue
        x = LEFT + step * (i + 0.5)
        runs[-1].append(f"{x:.1f},{y(share):.1f}")
        dots.append(f'<circle class="chart-dot" cx="{x:.1f}" cy="{y(share):.1f}" r="3">'
                    f"<title>{escape(m)}: {share * 100:.1f}%</title></circle>")
    lines = "".join(f'<polyline class="chart-line" points="{" ".join(r)}"/>' for r in runs if len(r) > 1)
    scale = "".join(f'<text class="chart-label" x="{LEFT - 4}" y="{y(s) + 4:.1f}" text-anchor="end">{int(s * 100)}%'
                    f"</text>" for s in (0, 0.5, 1))
    goal = (f'<line class="chart-target" x1="{LEFT}" y1="{y(target):.1f}" x2="{WIDTH - RIGHT}" y2="{y(target):.1f}"/>'
            f'<text class="chart-label" x="{WIDTH - RIGHT}" y="{y(target) - 3:.1f}" text-anchor="end">'
            f"{escape(target_label)}</text>")
    return _frame(chart_id, title, description, scale + _AXIS + goal + lines + "".join(dots) + _x_axis(months, step))


def bars_across(chart_id: str, title: str, description: str, labels: Sequence[str], values: Sequence[int]) -> Markup:
    """One horizontal bar per label (the backlog by department), scaled to the largest, the count at its end."""
    row, label_width = 24, 120
    height = TOP + row * max(len(labels), 1) + 4
    top = max(values, default=0) or 1
    room = WIDTH - label_width - RIGHT - 30
    body = "".join(
        f'<text class="chart-label" x="{label_width - 6}" y="{TOP + row * i + 15}" text-anchor="end">'
        f"{escape(label[:9])}</text>"
        f'<rect class="chart-bar" x="{label_width}" y="{TOP + row * i + 4}" width="{room * v / top:.1f}" height="16">'
        f"<title>{escape(label)}: {v}</title></rect>"
        f'<text class="chart-label" x="{label_width + room * v / top + 4:.1f}" y="{TOP + row * i + 15}">{v}</text>'
        for i, (label, v) in enumerate(zip(labels, values, strict=True)))
    return _frame(chart_id, title, description, body, height)
