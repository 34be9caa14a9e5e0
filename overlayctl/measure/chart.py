"""Pictures of a growth series: a block chart for the terminal, an SVG file
written here with no dependency, and a PNG when matplotlib is installed.

The charts plot what the series already holds; nothing here measures.
Sizes are labelled in the decimal units `ps -s` uses (human_size), and the
y axis starts at 0, so a flat line near the bottom reads as "no growth".
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

from overlayctl.errors import InvalidArgumentError, OverlayctlError
from overlayctl.measure.growth import Sample
from overlayctl.util.humanize import human_size

# Eighths of a cell, bottom up: one row of these is a sparkline.
BLOCKS = "▁▂▃▄▅▆▇█"
# The same ramp for terminals that cannot print the block elements.
ASCII_BLOCKS = "_..-=+*#"

PLOT_EXTRA = "pip install 'overlayctl[plot]'"


# --- scales ---------------------------------------------------------------------------


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top`: steps of 1, 2, 2.5 or 5
    times a power of ten, about `count` of them."""
    if top <= 0:
        return [0.0, 1.0]
    rough = top / count
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def column_samples(times: Sequence[float], columns: int) -> list[int]:
    """For `columns` moments evenly spaced in time, the index of the last
    sample at or before each (a size holds until the next sample)."""
    if not times or columns <= 0:
        return []
    start, span = times[0], (times[-1] - times[0]) or 1.0
    out, i = [], 0
    for c in range(columns):
        moment = start + span * (c + 1) / columns
        while i + 1 < len(times) and times[i + 1] <= moment + 1e-9:
            i += 1
        out.append(i)
    return out


def resample(times: Sequence[float], values: Sequence[float], columns: int) -> list[float]:
    """`columns` values evenly spaced in time, each the last measurement at
    or before its moment (a size holds until the next sample)."""
    if not values:
        return []
    return [values[i] for i in column_samples(times, columns)]


# --- terminal ---------------------------------------------------------------------------


def sparkline(values: Sequence[float], top: float | None = None, blocks: str = BLOCKS) -> str:
    """One character per value, scaled so that `top` (default: the largest
    value) is a full block; 0 is a space."""
    top = max(values, default=0) if top is None else top
    chars = []
    for value in values:
        eighths = round(8 * value / top) if top > 0 else 0
        chars.append(blocks[min(eighths, 8) - 1] if eighths > 0 else " ")
    return "".join(chars)


def terminal_chart(
    times: Sequence[float],
    values: Sequence[float],
    width: int,
    height: int = 8,
    label: Callable[[float], str] = human_size,
    blocks: str = BLOCKS,
    stacked: Sequence[float] | None = None,
    marks: Sequence[int] = (),
) -> list[str]:
    """Lines of a block chart of `values` over `times`, `width` characters
    wide (labels included), `height` rows of eighths, the y axis from 0.

    `stacked` values (bytes written to volumes) are drawn shaded on top of
    `values`, and the sample indexes in `marks` (whiteouts appearing) get a
    "w" in a row under the time axis; a legend line names both when given."""
    if not values:
        return []
    # A volume that shrank adds nothing on top (its files were deleted).
    totals = [v + max(0, s) for v, s in zip(values, stacked, strict=True)] if stacked else list(values)
    top = max(totals)
    y_labels = [label(top), label(0)]
    pad = max(len(text) for text in y_labels)
    columns = max(8, width - pad - 2)
    at = column_samples(times, columns)
    scaled = [round(8 * height * values[i] / top) if top > 0 else 0 for i in at]
    # Whole cells for the shaded part: a cell cannot hold two shades.
    shaded = [round(8 * height * totals[i] / top) if top > 0 else 0 for i in at]
    shade = "░" if blocks == BLOCKS else ":"
    lines = []
    for row in range(height - 1, -1, -1):
        cells = []
        for units, total in zip(scaled, shaded, strict=True):
            eighths = min(max(units - 8 * row, 0), 8)
            if eighths:
                cells.append(blocks[eighths - 1])
            elif total - 8 * row >= 4:
                cells.append(shade)
            else:
                cells.append(" ")
        if row == height - 1:
            axis = f"{y_labels[0]:>{pad}} ┤"
        elif row == 0:
            axis = f"{y_labels[1]:>{pad}} ┼"
        else:
            axis = f"{'':>{pad}} │"
        lines.append(axis + "".join(cells))
    if marks:
        # A sample between two columns' moments is marked on the later one.
        row = ["w" if any((at[c - 1] if c else -1) < m <= i for m in marks) else " " for c, i in enumerate(at)]
        lines.append(" " * (pad + 2) + "".join(row).rstrip())
    left, right = f"{round(times[0], 1):g}s", f"{round(times[-1], 1):g}s"
    lines.append(" " * (pad + 2) + left + right.rjust(columns - len(left)))
    legend = []
    if stacked:
        grown = max(max(stacked), 0)
        legend.append(f"{shade} written to volumes: {label(grown)} at most (their dirs' growth; not in the upper dir)")
    if marks:
        legend.append("w whiteouts appear (deletions of image files)")
    if legend:
        lines.append(" " * (pad + 2) + "   ".join(legend))
    if blocks != BLOCKS:
        lines = [line.replace("┤", "|").replace("┼", "+").replace("│", "|") for line in lines]
    return lines


# --- SVG ----------------------------------------------------------------------------------

_W, _H = 760, 380
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 24, 44, 52
_UPPER_COLOUR, _IO_COLOUR, _COPY_COLOUR = "#1f77b4", "#ff7f0e", "#d62728"
_VOLUME_COLOUR, _WHITEOUT_COLOUR = "#2ca02c", "#555555"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _points(xs: Sequence[float], ys: Sequence[float]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))


def _changes(series: Sequence[Sample], name: str) -> list[int]:
    marks = []
    for i, sample in enumerate(series):
        before = getattr(series[i - 1], name) if i else 0
        if getattr(sample, name) != before:
            marks.append(i)
    return marks


def copy_up_marks(series: Sequence[Sample]) -> list[int]:
    """Indexes of the samples where the copy-up count changed (the first
    sample too if it already has copy-ups)."""
    return _changes(series, "copy_ups")


def whiteout_marks(series: Sequence[Sample]) -> list[int]:
    """Indexes of the samples where the whiteout count changed (the first
    sample too if it already has whiteouts)."""
    return _changes(series, "whiteouts")


def svg_chart(series: Sequence[Sample], title: str = "Upper dir growth") -> str:
    """A standalone SVG line chart of the series: upper dir bytes and the
    cumulative bytes written by the container's processes against time,
    with a marker (and the new count) wherever the copy-up count changes;
    where volumes grew, their growth stacked on the upper dir (the part of
    "written" that the upper dir never sees), labelled; and a mark (and
    the new count) wherever the whiteout count changes."""
    if not series:
        raise OverlayctlError("no samples to plot")
    times = [s.time for s in series]
    upper = [s.bytes for s in series]
    written = [s.write_bytes for s in series]
    volumes = [max(0, s.volume_bytes) for s in series]  # a volume that shrank adds nothing on top
    with_volumes = any(volumes)
    stacked = [u + v for u, v in zip(upper, volumes, strict=True)]
    t_ticks = nice_ticks(times[-1] - times[0], 6)
    y_ticks = nice_ticks(max(max(stacked), max(written)), 5)
    t0, t_span, y_top = times[0], t_ticks[-1] or 1.0, y_ticks[-1] or 1.0
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(t: float) -> float:
        return _LEFT + plot_w * (t - t0) / t_span

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - v / y_top)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        'font-family="sans-serif" font-size="12">',
        f"<title>{_esc(title)}</title>",
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
        f'<text x="{_LEFT}" y="22" font-size="15" font-weight="bold">{_esc(title)}</text>',
    ]
    for v in y_ticks:
        out.append(f'<line x1="{_LEFT}" y1="{y(v):.1f}" x2="{_W - _RIGHT}" y2="{y(v):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{_LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_esc(human_size(v))}</text>')
    for t in t_ticks:
        out.append(
            f'<line x1="{x(t0 + t):.1f}" y1="{_H - _BOTTOM}" x2="{x(t0 + t):.1f}" y2="{_H - _BOTTOM + 5}" '
            'stroke="black"/>'
        )
        out.append(f'<text x="{x(t0 + t):.1f}" y="{_H - _BOTTOM + 18}" text-anchor="middle">{t:g}</text>')
    out += [
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_H - _BOTTOM}" stroke="black"/>',
        f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{_W - _RIGHT}" y2="{_H - _BOTTOM}" stroke="black"/>',
        f'<text x="{_LEFT + plot_w / 2:.0f}" y="{_H - 12}" text-anchor="middle">time (seconds)</text>',
        f'<text transform="translate(16 {_TOP + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle">'
        "bytes (decimal units)</text>",
    ]
    xs = [x(t) for t in times]
    if with_volumes:
        # The volumes' growth as a band above the upper dir's line: its top
        # is upper + volumes, which meets "written" where every byte is
        # accounted for.
        band = _points(xs + xs[::-1], [y(v) for v in stacked] + [y(v) for v in upper[::-1]])
        out.append(f'<polygon fill="{_VOLUME_COLOUR}" fill-opacity="0.25" stroke="none" points="{band}"/>')
        out.append(
            f'<polyline fill="none" stroke="{_VOLUME_COLOUR}" stroke-width="1.5" '
            f'points="{_points(xs, [y(v) for v in stacked])}"/>'
        )
        i = max(range(len(series)), key=lambda k: (volumes[k], k))
        out.append(
            f'<text x="{min(xs[i], _W - _RIGHT - 4):.1f}" y="{(y(stacked[i]) + y(upper[i])) / 2 + 4:.1f}" '
            f'text-anchor="end" fill="{_VOLUME_COLOUR}">{_esc(human_size(volumes[i]))} to volumes</text>'
        )
    out.append(
        f'<polyline fill="none" stroke="{_UPPER_COLOUR}" stroke-width="2.5" '
        f'points="{_points(xs, [y(v) for v in upper])}"/>'
    )
    # Dashed and on top: where every byte written lands in the upper dir the
    # two lines coincide, and the upper one still shows through the gaps.
    out.append(
        f'<polyline fill="none" stroke="{_IO_COLOUR}" stroke-width="2" stroke-dasharray="6 4" '
        f'points="{_points(xs, [y(v) for v in written])}"/>'
    )
    for i in copy_up_marks(series):
        cx, cy = xs[i], y(upper[i])
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{_COPY_COLOUR}"/>')
        count = series[i].copy_ups
        out.append(
            f'<text x="{cx + 7:.1f}" y="{cy + 16:.1f}" fill="{_COPY_COLOUR}">'
            f"{count} copy-up{'' if count == 1 else 's'}</text>"
        )
    copied = set(copy_up_marks(series))
    for i in whiteout_marks(series):
        cx, cy = xs[i], y(upper[i])
        out.append(
            f'<path d="M{cx - 5:.1f},{cy - 5:.1f} L{cx + 5:.1f},{cy + 5:.1f} M{cx - 5:.1f},{cy + 5:.1f} '
            f'L{cx + 5:.1f},{cy - 5:.1f}" stroke="{_WHITEOUT_COLOUR}" stroke-width="2.5"/>'
        )
        count = series[i].whiteouts
        out.append(
            f'<text x="{cx + 7:.1f}" y="{cy + (30 if i in copied else 16):.1f}" fill="{_WHITEOUT_COLOUR}">'
            f"{count} whiteout{'' if count == 1 else 's'}</text>"
        )
    out += _legend(_LEFT + 12, _TOP + 14, with_volumes, bool(whiteout_marks(series)))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _legend(x0: float, y0: float, volumes: bool = False, whiteouts: bool = False) -> list[str]:
    entries = [
        (
            f'<line x1="0" y1="0" x2="22" y2="0" stroke="{_UPPER_COLOUR}" stroke-width="2.5"/>',
            "upper dir, allocated (du -s)",
        ),
        (
            f'<line x1="0" y1="0" x2="22" y2="0" stroke="{_IO_COLOUR}" stroke-width="2" stroke-dasharray="6 4"/>',
            "written by the container's processes (cumulative)",
        ),
        (f'<circle cx="11" cy="0" r="5" fill="{_COPY_COLOUR}"/>', "copy-up count changes"),
    ]
    if volumes:
        entries.append(
            (
                f'<rect x="0" y="-6" width="22" height="12" fill="{_VOLUME_COLOUR}" fill-opacity="0.25" '
                f'stroke="{_VOLUME_COLOUR}"/>',
                "written to volumes (their growth), on top of the upper dir",
            )
        )
    if whiteouts:
        entries.append(
            (
                f'<path d="M6,-5 L16,5 M6,5 L16,-5" stroke="{_WHITEOUT_COLOUR}" stroke-width="2.5"/>',
                "whiteout count changes (deletions)",
            )
        )
    out = [
        f'<rect x="{x0 - 6}" y="{y0 - 12}" width="360" height="{18 * len(entries) + 6}" '
        'fill="white" fill-opacity="0.85" stroke="#cccccc"/>'
    ]
    for i, (swatch, text) in enumerate(entries):
        out.append(f'<g transform="translate({x0} {y0 + 18 * i})">{swatch}<text x="30" y="4">{_esc(text)}</text></g>')
    return out


# --- files ---------------------------------------------------------------------------------


def check_plot_target(path: str) -> str:
    """The format a --plot file name asks for, "svg" or "png"; refused up
    front (before any sampling) when it cannot be written here."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".svg":
        return "svg"
    if ext == ".png":
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise OverlayctlError(f'cannot plot to "{path}": PNG needs matplotlib; {PLOT_EXTRA} (or name a .svg file)')
        return "png"
    raise InvalidArgumentError(f'cannot plot to "{path}": name a .svg or a .png file')


def write_plot(series: Sequence[Sample], path: str, title: str = "Upper dir growth") -> None:
    """Write the chart of `series` to `path` as SVG or PNG (by extension)."""
    kind = check_plot_target(path)
    try:
        if kind == "svg":
            with open(path, "w", encoding="utf-8") as f:
                f.write(svg_chart(series, title))
        else:
            _write_png(series, path, title)
    except OSError as e:
        raise OverlayctlError(f'cannot plot to "{path}": {e.strerror}') from e


def _write_png(series: Sequence[Sample], path: str, title: str) -> None:
    if not series:
        raise OverlayctlError("no samples to plot")
    import matplotlib

    matplotlib.use("Agg")  # no display: render to the file only
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FuncFormatter

    times = [s.time for s in series]
    fig, ax = plt.subplots(figsize=(7.6, 3.8), dpi=100)
    ax.plot(times, [s.bytes for s in series], color=_UPPER_COLOUR, linewidth=2.5, label="upper dir, allocated (du -s)")
    ax.plot(
        times,
        [s.write_bytes for s in series],
        color=_IO_COLOUR,
        linewidth=2,
        linestyle="--",
        label="written by the container's processes (cumulative)",
    )
    volumes = [max(0, s.volume_bytes) for s in series]
    if any(volumes):
        uppers = [s.bytes for s in series]
        ax.fill_between(
            times,
            uppers,
            [u + v for u, v in zip(uppers, volumes, strict=True)],
            color=_VOLUME_COLOUR,
            alpha=0.25,
            label="written to volumes (their growth), on top of the upper dir",
        )
    whiteouts = whiteout_marks(series)
    if whiteouts:
        ax.scatter(
            [times[i] for i in whiteouts],
            [series[i].bytes for i in whiteouts],
            color=_WHITEOUT_COLOUR,
            marker="x",
            zorder=3,
            label="whiteout count changes (deletions)",
        )
    marks = copy_up_marks(series)
    ax.scatter(
        [times[i] for i in marks],
        [series[i].bytes for i in marks],
        color=_COPY_COLOUR,
        zorder=3,
        label="copy-up count changes",
    )
    for i in marks:
        ax.annotate(
            str(series[i].copy_ups),
            (times[i], series[i].bytes),
            textcoords="offset points",
            xytext=(6, -12),
            color=_COPY_COLOUR,
        )
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: human_size(v)))
    ax.set_xlabel("time (seconds)")
    ax.set_ylabel("bytes (decimal units)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
