"""Tables that fit the console's width without cutting a cell: column groups stack. Presentation.

A `Sheet` is a title, key columns (repeated in every part: the hub, the DC and its name) and
groups of value columns. `print_sheet` prints it as one rich table when it fits the console's
width; otherwise the groups go into as many tables as needed, one under the other, each with the
key columns again; and when even the key columns with one value column do not fit, each row
becomes a block of `header: value` lines. No cell is ever truncated or ellipsised: numbers are
never folded, long names wrap at spaces only in the block layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its header, and whether it is text (left-aligned) or a figure (right-aligned)."""

    header: str
    text: bool = False


@dataclass(frozen=True, slots=True)
class Group:
    """Value columns that belong together; `title` names them when the sheet is stacked."""

    title: str
    columns: tuple[Column, ...]


@dataclass(slots=True)
class Sheet:
    """Rows of cells (strings, rich markup allowed): the key cells, then every group's cells."""

    title: str
    keys: tuple[Column, ...]
    groups: tuple[Group, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    footer: tuple[str, ...] | None = None  # one cell per column (keys, then groups), or None

    def add_row(self, *cells: str) -> None:
        width = len(self.keys) + sum(len(g.columns) for g in self.groups)
        if len(cells) != width:
            raise ValueError(f"{self.title}: {len(cells)} cells for {width} columns")
        self.rows.append(tuple(cells))


def _table(columns: Sequence[Column], rows: Sequence[Sequence[str]],
           footer: Sequence[str] | None) -> Any:
    from rich import box
    from rich.table import Table

    # no title in the table (rich would wrap it to the table's width): print_sheet prints it
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  show_footer=footer is not None)
    for i, column in enumerate(columns):
        # never folded: a table is printed only when its natural width fits
        table.add_column(column.header, justify="left" if column.text else "right", no_wrap=True,
                         overflow="fold", footer=footer[i] if footer is not None else "")
    for row in rows:
        table.add_row(*row)
    return table


def _natural_width(console: Console, renderable: Any) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(100_000), renderable).maximum


def _slice(cells: Sequence[str], index: Sequence[int]) -> list[str]:
    return [cells[i] for i in index]


def layout(sheet: Sheet, width: int, console: Console) -> list[tuple[str, list[int]]] | None:
    """The parts of a sheet at this width: (title, column indexes) each; None: blocks needed."""
    keys = list(range(len(sheet.keys)))
    columns = list(sheet.keys) + [c for g in sheet.groups for c in g.columns]
    spans: list[tuple[str, list[int]]] = []
    start = len(keys)
    for group in sheet.groups:
        spans.append((group.title, list(range(start, start + len(group.columns)))))
        start += len(group.columns)

    def fits(index: list[int]) -> bool:
        rows = [_slice(r, index) for r in sheet.rows]
        footer = _slice(sheet.footer, index) if sheet.footer is not None else None
        table = _table([columns[i] for i in index], rows, footer)
        return _natural_width(console, table) <= width

    everything = keys + [i for _, index in spans for i in index]
    if fits(everything):
        return [(sheet.title, everything)]
    parts: list[tuple[str, list[int]]] = []
    current: list[int] = []
    titles: list[str] = []
    # whole groups while they fit; a group too wide alone is split column by column
    for title, index in spans:
        if fits(keys + current + index):
            current += index
            titles.append(title)
            continue
        if current:
            parts.append((" · ".join(titles), keys + current))
            current, titles = [], []
        if fits(keys + index):
            current, titles = list(index), [title]
            continue
        piece: list[int] = []
        for i in index:
            if fits(keys + piece + [i]):
                piece.append(i)
            elif piece:
                parts.append((title, keys + piece))
                piece = [i]
            else:
                return None  # not even the keys and one column: blocks
        current, titles = piece, [title]
    if current:
        parts.append((" · ".join(titles), keys + current))
    return [(f"{sheet.title}: {title}", index) for title, index in parts]


def print_sheet(console: Console, sheet: Sheet) -> None:
    """Print the sheet within `console.width`: one table, stacked tables, or blocks of lines."""
    if not sheet.rows:
        console.print(f"[bold]{sheet.title}[/]: none")
        return
    columns = list(sheet.keys) + [c for g in sheet.groups for c in g.columns]
    parts = layout(sheet, console.width, console)
    if parts is None:
        _print_blocks(console, sheet, columns)
        return
    for title, index in parts:
        rows = [_slice(r, index) for r in sheet.rows]
        footer = _slice(sheet.footer, index) if sheet.footer is not None else None
        console.print(title, style="bold", highlight=False)
        console.print(_table([columns[i] for i in index], rows, footer))
        console.print()


def _print_blocks(console: Console, sheet: Sheet, columns: Sequence[Column]) -> None:
    """One block per row: its key cells on a line, then `header: value` lines (wrapping at spaces)."""
    console.print(f"[bold]{sheet.title}[/]")
    n = len(sheet.keys)
    rows = list(sheet.rows) + ([sheet.footer] if sheet.footer is not None else [])
    for row in rows:
        console.print(" · ".join(cell for cell in row[:n] if cell) or "(all)", style="bold")
        for column, cell in zip(columns[n:], row[n:], strict=True):
            console.print(f"  {column.header}: {cell}", overflow="fold")
    console.print()
