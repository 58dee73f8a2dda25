"""A DataTable updated by row key: stale rows removed, changed cells updated, new rows added,
sorted once — no clear-and-refill, so nothing flickers and the selected row stays selected."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

Cell = Any  # str or rich Text


class SortableText(Text):
    """Text that sorts by a value of its own (bytes, a rate) rather than by its characters."""

    sort_value: Any = None


def cell(text: Any, sort: Any = None, style: str = "", justify: str = "right") -> SortableText:
    """A right-aligned table cell that sorts by *sort* (by its text when *sort* is None)."""
    out = SortableText(str(text), style=style, justify=justify)  # type: ignore[arg-type]
    out.sort_value = sort
    return out


def sort_key(value: Any) -> Tuple[bool, Any]:
    """Numbers before blanks; a SortableText by its own value."""
    v = getattr(value, "sort_value", None)
    if v is None:
        v = value.plain if isinstance(value, Text) else value
    if v is None or v == "":
        return (False, 0)
    if isinstance(v, (int, float)):
        return (True, (0, v, ""))
    return (True, (1, 0, str(v)))


def _signature(cells: Sequence[Any]) -> Tuple[Any, ...]:
    return tuple((c.plain, str(c.style), getattr(c, "sort_value", None)) if isinstance(c, Text)
                 else (c,) for c in cells)


class KeyedTable(DataTable):
    """``sync({key: (cell, ...)})`` makes the table show exactly those rows.

    Columns are declared once with :meth:`set_columns` (label, key). Sorting: ``sort_by`` is a
    column key; a cell made by :func:`cell` sorts by its number, so "1.2 MiB" sorts by bytes.
    """

    DEFAULT_CSS = """
    KeyedTable { height: 1fr; }
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(*args, **kwargs)
        self._cells: Dict[str, Tuple[Cell, ...]] = {}
        self.column_keys: Tuple[str, ...] = ()
        self.sort_by: Optional[str] = None
        self.sort_reverse = True

    def set_columns(self, columns: Sequence[Tuple[str, str]]) -> None:
        if tuple(k for _, k in columns) == self.column_keys:
            return
        self.clear(columns=True)
        self._cells.clear()
        for label, key in columns:
            self.add_column(label, key=key)
        self.column_keys = tuple(k for _, k in columns)

    def sync(self, rows: Dict[str, Sequence[Cell]]) -> None:
        """Show *rows* (key → one cell per column), keeping the cursor on the same row key."""
        selected = self.selected_key
        with self.app.batch_update():
            for key in [k for k in self._cells if k not in rows]:
                try:
                    self.remove_row(key)
                except RowDoesNotExist:
                    pass
                self._cells.pop(key, None)
            for key, cells in rows.items():
                # A plain string from the agent (a component's name, say) is text, never
                # markup: "[/]" in a name must not end the dashboard.
                cells = tuple(Text(c) if isinstance(c, str) else c for c in cells)
                old = self._cells.get(key)
                if old is None:
                    self.add_row(*cells, key=key)
                elif _signature(old) != _signature(cells):
                    for column, before, after in zip(self.column_keys, old, cells):
                        if _signature((before,)) != _signature((after,)):
                            try:
                                self.update_cell(key, column, after, update_width=True)
                            except CellDoesNotExist:
                                pass
                self._cells[key] = cells
            self._sort()
            self._keep_cursor(selected)

    def _keep_cursor(self, selected: Optional[str]) -> None:
        if selected is not None and selected in self._cells:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def _sort(self) -> None:
        if self.sort_by and self.sort_by in self.column_keys and self._cells:
            self.sort(self.sort_by, key=sort_key, reverse=self.sort_reverse)

    def sort_on(self, column: str) -> None:
        """Sort by *column*; asking again for the same column flips the direction."""
        if self.sort_by == column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_by, self.sort_reverse = column, True
        selected = self.selected_key
        with self.app.batch_update():
            self._sort()
            self._keep_cursor(selected)

    @property
    def selected_key(self) -> Optional[str]:
        if not self._cells or self.cursor_row is None or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return key.value

    def row_cells(self, key: str) -> Optional[Tuple[Cell, ...]]:
        return self._cells.get(key)
