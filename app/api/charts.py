"""Charts as SVG text, drawn on the server from a report's table (app/services/reports.py).

Pure functions: a table in, a complete <svg> document out, no JavaScript and nothing fetched,
so a chart works offline, in the page and on its own (curl, an <img>, a mail). Every label is
text that may have come from an email (a company or rep name), so each one goes through
textsafe.shown() (bidirectional controls made visible), loses the control characters XML
cannot carry, and is escaped. Colours are presentation attributes, not a <style> element:
the page's Content-Security-Policy refuses inline styles, and text uses currentColor so the
chart follows the page's light or dark theme.

Each plotted number is an element with data-row (its row in the table), data-key (its column)
and data-value (the text the CSV and the table show), and a <title> that reads it out in
words, for tooltips, screen readers and the test that the CSV has exactly these numbers.
"""

from __future__ import annotations

import math
import re
from html import escape

from app.services.reports import cell_text
from app.textsafe import shown

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2", "#edc948")
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
MIN_WIDTH, MAX_WIDTH, DEFAULT_WIDTH = 280, 1400, 720
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def esc(value) -> str:
    """Any value as safe SVG text or attribute content."""
    return escape(_NOT_XML.sub("\ufffd", str(shown(cell_text(value)))), quote=True)


def _short(value, most: int) -> str:
    text = str(shown(cell_text(value)))
    return text if len(text) <= most else text[: most - 1] + "…"


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _nice_max(top: float, whole: bool = False) -> tuple[float, float]:
    """An axis maximum and tick step (1, 2 or 5 times a power of ten) with about four ticks;
    whole: counts, whose ticks are whole numbers."""
    if top <= 0:
        return 1.0, 1.0
    raw = max(top / 4, 1.0) if whole else top / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return step * math.ceil(top / step), step


def _fmt_tick(v: float) -> str:
    return cell_text(round(v, 2))


def _label(columns: list[dict], key: str) -> str:
    return next((c["label"] for c in columns if c["key"] == key), key)


def _index(columns: list[dict], key: str) -> int:
    return next(i for i, c in enumerate(columns) if c["key"] == key)


def _mark(row: int, key: str, value, words: str, shape: str) -> str:
    """One plotted number: its element with the data attributes and a spoken <title>."""
    return f'<g data-row="{row}" data-key="{esc(key)}" data-value="{esc(value)}"><title>{esc(words)}</title>{shape}</g>'


def _legend(keys: list[str], columns: list[dict], x: float, y: float, width: float) -> tuple[str, float]:
    """Colour keys of the series, wrapping to the width; returns the SVG and the height used."""
    parts, cx, cy = [], x, y
    for n, key in enumerate(keys):
        text = _short(_label(columns, key), 28)
        w = 18 + 7 * len(text)
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 18
        parts.append(
            f'<rect x="{cx:.1f}" y="{cy:.1f}" width="12" height="12" rx="2" fill="{PALETTE[n % len(PALETTE)]}"/>'
            f'<text x="{cx + 16:.1f}" y="{cy + 10:.1f}">{esc(text)}</text>'
        )
        cx += w + 12
    return "".join(parts), cy - y + 18


def _frame(table: dict, width: float, height: float, body: str, summary: str) -> str:
    key = re.sub(r"[^a-z0-9_-]", "", str(table["key"]).lower()) or "chart"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" aria-labelledby="{key}-title {key}-desc" font-family="{esc(FONT)}" '
        f'font-size="12" fill="currentColor" class="chart chart-{esc(table["chart"])}">'
        f'<title id="{key}-title">{esc(table["title"])}</title><desc id="{key}-desc">{esc(summary)}</desc>'
        f"{body}</svg>"
    )


def _empty(table: dict, width: float) -> str:
    body = f'<text x="{width / 2:.1f}" y="40" text-anchor="middle" opacity="0.75">Nothing in this range.</text>'
    return _frame(table, width, 64, body, "No data in this range.")


def _axis_y(x0: float, y0: float, h: float, w: float, top: float, step: float) -> str:
    out, v = [], 0.0
    while v <= top + 1e-9:
        y = y0 + h - h * v / top
        out.append(
            f'<line x1="{x0:.1f}" x2="{x0 + w:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="currentColor" '
            f'stroke-opacity="0.15"/><text x="{x0 - 4:.1f}" y="{y + 4:.1f}" text-anchor="end" '
            f'opacity="0.8">{esc(_fmt_tick(v))}</text>'
        )
        v += step
    return "".join(out)


def _columns_chart(
    table: dict,
    rows: list[tuple[int, list]],
    x0: float,
    y0: float,
    w: float,
    h: float,
    top: float,
    *,
    stacked: bool,
    x_col: int,
    prefix: str = "",
) -> str:
    """Vertical bars per row (grouped or stacked) in the box, against a shared maximum."""
    cols, series = table["columns"], table["series"]
    top, step = _nice_max(top, _whole(table))
    out = [_axis_y(x0, y0, h, w, top, step)]
    n = max(1, len(rows))
    slot = w / n
    inner = slot * 0.78
    bar = inner if stacked else inner / max(1, len(series))
    every = max(1, math.ceil(n / max(1, int(w / 44))))
    for pos, (ri, row) in enumerate(rows):
        left = x0 + pos * slot + (slot - inner) / 2
        base = y0 + h
        category = row[x_col]
        for si, key in enumerate(series):
            value = row[_index(cols, key)]
            v = _num(value)
            if v is None:
                continue
            bh = h * v / top
            x = left if stacked else left + si * bar
            y = (base - bh) if stacked else (y0 + h - bh)
            shape = (
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" height="{bh:.1f}" '
                f'fill="{PALETTE[si % len(PALETTE)]}"/>'
            )
            words = f"{prefix}{cell_text(category)}: {_label(cols, key)} {cell_text(value)}"
            out.append(_mark(ri, key, value, words, shape))
            if stacked:
                base -= bh
        if pos % every == 0:
            text = _short(category, 10)
            if len(text) == 10 and text[4] == "-":  # a date: month-day is enough under a bar
                text = text[5:]
            out.append(
                f'<text x="{left + inner / 2:.1f}" y="{y0 + h + 14:.1f}" text-anchor="middle" '
                f'opacity="0.8">{esc(text)}</text>'
            )
    for key in table.get("labels", []):  # counts drawn as words above each group
        for pos, (ri, row) in enumerate(rows):
            value = row[_index(cols, key)]
            if _num(value) in (None, 0):
                continue
            out.append(
                _mark(
                    ri,
                    key,
                    value,
                    f"{cell_text(row[x_col])}: {_label(cols, key)} {cell_text(value)}",
                    f'<text x="{x0 + pos * slot + slot / 2:.1f}" y="{y0 - 2:.1f}" text-anchor="middle" '
                    f'font-size="10" opacity="0.8">{esc(value)}</text>',
                )
            )
    return "".join(out)


def _whole(table: dict) -> bool:
    kinds = {c["key"]: c["kind"] for c in table["columns"]}
    return all(kinds.get(k) == "int" for k in table["series"])


def _plotted(table: dict) -> bool:
    """Whether any drawn number is not zero (an all-zero chart says so in words instead)."""
    idx = [_index(table["columns"], k) for k in table["series"]]
    return any(_num(row[i]) for row in table["rows"] for i in idx)


def _totals(row: list, idx: list[int], stacked: bool) -> float:
    values = [_num(row[i]) or 0.0 for i in idx]
    return sum(values) if stacked else max(values, default=0.0)


def columns(table: dict, width: float, *, stacked: bool) -> str:
    rows = table["rows"]
    if not _plotted(table):
        return _empty(table, width)
    cols, series = table["columns"], table["series"]
    idx = [_index(cols, k) for k in series]
    legend, lh = _legend(series, cols, 8, 6, width - 16)
    y0 = 14 + lh + (12 if table.get("labels") else 0)
    h = 180 if width >= 500 else 150
    top = max(_totals(r, idx, stacked) for r in rows)
    body = legend + _columns_chart(table, list(enumerate(rows)), 44, y0, width - 52, h, top, stacked=stacked, x_col=0)
    summary = f"{'Stacked' if stacked else 'Grouped'} bars of {', '.join(_label(cols, k) for k in series)} by {cols[0]['label'].lower()}."
    return _frame(table, width, y0 + h + 24, body, summary)


def multiples(table: dict, width: float) -> str:
    """One small grouped-bar chart per value of the first column (a rep), on one shared scale so
    panels compare at a glance; the second column is the x axis (the week)."""
    rows = table["rows"]
    if not _plotted(table):
        return _empty(table, width)
    cols, series = table["columns"], table["series"]
    idx = [_index(cols, k) for k in series]
    groups: dict[str, list[tuple[int, list]]] = {}
    for ri, row in enumerate(rows):
        groups.setdefault(str(row[0]), []).append((ri, row))
    legend, lh = _legend(series, cols, 8, 6, width - 16)
    per_row = max(1, min(len(groups), int(width // 330)))
    pw = width / per_row
    ph = 150 if len(groups) > 1 else 200
    top = max(_totals(r, idx, False) for r in rows)
    parts = [legend]
    y_start = 14 + lh
    for n, (name, items) in enumerate(groups.items()):
        gx, gy = (n % per_row) * pw, y_start + (n // per_row) * (ph + 44)
        parts.append(f'<text x="{gx + 8:.1f}" y="{gy + 14:.1f}" font-weight="600">{esc(_short(name, 40))}</text>')
        parts.append(
            _columns_chart(
                table,
                items,
                gx + 40,
                gy + 24,
                pw - 52,
                ph - 10,
                top,
                stacked=False,
                x_col=1,
                prefix=f"{name}, week of ",
            )
        )
    height = y_start + math.ceil(len(groups) / per_row) * (ph + 44)
    summary = (
        f"Per {cols[0]['label'].lower()}: {', '.join(_label(cols, k) for k in series)} by {cols[1]['label'].lower()}."
    )
    return _frame(table, width, height, "".join(parts), summary)


def hbars(table: dict, width: float) -> str:
    """Horizontal bars, one group per row (a rep, a company, a stage), series side by side on one
    scale; the table's `labels` columns are written beside the bars as words."""
    rows = table["rows"]
    if not _plotted(table):
        return _empty(table, width)
    cols, series, labels = table["columns"], table["series"], table.get("labels", [])
    idx = [_index(cols, k) for k in series]
    legend, lh = _legend(series, cols, 8, 6, width - 16) if len(series) > 1 else ("", 0.0)
    name_w = min(200.0, max(90.0, width * 0.3))
    x0, plot_w = name_w + 8, max(60.0, width - name_w - 8 - 24)
    bar_h = 12.0
    group_h = bar_h * len(series) + 10 + (14 if labels else 0)  # the labels go on a line under the bars
    y0 = 10 + lh
    top, step = _nice_max(max((_totals(r, idx, False) for r in rows), default=0.0), _whole(table))
    out = [legend]
    v = 0.0
    axis_bottom = y0 + group_h * len(rows)
    while v <= top + 1e-9:  # vertical grid with its numbers below
        x = x0 + plot_w * v / top
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0:.1f}" y2="{axis_bottom:.1f}" stroke="currentColor" '
            f'stroke-opacity="0.15"/><text x="{x:.1f}" y="{axis_bottom + 14:.1f}" text-anchor="middle" '
            f'opacity="0.8">{esc(_fmt_tick(v))}</text>'
        )
        v += step
    most = max(8, int(name_w / 7))
    for ri, row in enumerate(rows):
        gy = y0 + ri * group_h
        out.append(
            f'<text x="{name_w:.1f}" y="{gy + 5 + bar_h * len(series) / 2 + 3:.1f}" text-anchor="end">{esc(_short(row[0], most))}'
            f"<title>{esc(row[0])}</title></text>"
        )
        for si, key in enumerate(series):
            value = row[_index(cols, key)]
            v = _num(value)
            if v is None:
                continue
            bw = plot_w * v / top
            shape = (
                f'<rect x="{x0:.1f}" y="{gy + 5 + si * bar_h:.1f}" width="{max(bw, 1):.1f}" height="{bar_h - 1:.1f}" '
                f'fill="{PALETTE[si % len(PALETTE)]}"/>'
            )
            out.append(_mark(ri, key, value, f"{cell_text(row[0])}: {_label(cols, key)} {cell_text(value)}", shape))
        lx, ly = x0, gy + 5 + bar_h * len(series) + 10
        for key in labels:
            value = row[_index(cols, key)]
            if value is None:
                continue
            words = f"{_label(cols, key)}: {cell_text(value)}"
            text = f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="11" opacity="0.85">{esc(words)}</text>'
            out.append(_mark(ri, key, value, f"{cell_text(row[0])}: {words}", text))
            lx += 6.2 * len(words) + 14
    summary = f"Horizontal bars of {', '.join(_label(cols, k) for k in series)} per {cols[0]['label'].lower()}."
    return _frame(table, width, axis_bottom + 24, "".join(out), summary)


def figures(table: dict, width: float) -> str:
    """Headline numbers as tiles: label and value."""
    rows = table["rows"]
    cols = table["columns"]
    per_row = max(1, min(len(rows), int(width // 160)))
    tw = width / per_row
    out = []
    for ri, row in enumerate(rows):
        x, y = (ri % per_row) * tw, (ri // per_row) * 72
        value = row[1]
        shown_value = "–" if value is None else cell_text(value)
        tile = (
            f'<rect x="{x + 4:.1f}" y="{y + 4:.1f}" width="{tw - 8:.1f}" height="64" rx="6" fill="none" '
            f'stroke="currentColor" stroke-opacity="0.25"/>'
            f'<text x="{x + 14:.1f}" y="{y + 38:.1f}" font-size="22" font-weight="600">{esc(shown_value)}</text>'
            f'<text x="{x + 14:.1f}" y="{y + 56:.1f}" font-size="11" opacity="0.8">{esc(_short(row[0], int(tw / 6.5)))}</text>'
        )
        out.append(_mark(ri, cols[1]["key"], value, f"{cell_text(row[0])}: {shown_value}", tile))
    height = math.ceil(len(rows) / per_row) * 72 + 4
    return _frame(table, width, height, "".join(out), "; ".join(f"{r[0]}: {cell_text(r[1]) or 'none'}" for r in rows))


def render(table: dict, width: int | None = None) -> str:
    """The SVG of one report table, laid out for `width` pixels (clamped to a readable range)."""
    w = float(min(MAX_WIDTH, max(MIN_WIDTH, width or DEFAULT_WIDTH)))
    kind = table["chart"]
    if kind == "multiples":
        return multiples(table, w)
    if kind == "hbars":
        return hbars(table, w)
    if kind == "figures":
        return figures(table, w)
    return columns(table, w, stacked=kind == "stacked")
