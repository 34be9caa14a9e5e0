"""Go's text/tabwriter, as the docker CLI sets it up for its tables.

Docker writes each row with tab-terminated cells into
``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)``: minimum cell width 10,
padding 3, spaces. A column's width is decided per *column block*, the run
of consecutive lines that have a cell in that column, so a line without a
tab (or with fewer cells) ends the blocks to its right. The text after the
last tab of a line is not a cell of any column: it is never padded.
"""

from __future__ import annotations

from collections.abc import Sequence


def _cell_width(text: str) -> int:
    # tabwriter counts runes, not bytes.
    return len(text)


def align(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """``text`` (lines of tab-terminated cells) aligned as Go's tabwriter
    with flags 0 and padchar ' ' writes it."""
    trailing_newline = text.endswith("\n")
    lines = [line.split("\t") for line in (text[:-1] if trailing_newline else text).split("\n")]
    out: list[str] = []
    _format(lines, 0, len(lines), [], minwidth, padding, out)
    return "\n".join(out) + ("\n" if trailing_newline else "")


def _format(
    lines: Sequence[list[str]], line0: int, line1: int, widths: list[int], minwidth: int, padding: int, out: list[str]
) -> None:
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        # A block of column `column` starts here: print the lines above it
        # with the widths known so far, then size this column over the block.
        _write(lines, line0, this, widths, out)
        line0 = this
        width = minwidth
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, _cell_width(lines[this][column]) + padding)
            this += 1
        widths.append(width)
        _format(lines, line0, this, widths, minwidth, padding, out)
        widths.pop()
        line0 = this
    _write(lines, line0, line1, widths, out)


def _write(lines: Sequence[list[str]], line0: int, line1: int, widths: list[int], out: list[str]) -> None:
    for cells in lines[line0:line1]:
        parts = []
        for j, cell in enumerate(cells):
            if j < len(widths):
                parts.append(cell + " " * (widths[j] - _cell_width(cell)))
            else:
                parts.append(cell)
        out.append("".join(parts))
