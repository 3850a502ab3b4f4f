"""CSV that a spreadsheet opens as data: a text cell that starts like a formula (``=``, ``+``,
``-``, ``@``, a tab or a carriage return) gets a leading apostrophe, so a file name or a
reviewer's note such as ``=HYPERLINK(...)`` is shown as text instead of being evaluated
(CSV/formula injection). Numbers are written as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value``, with text that a spreadsheet would read as a formula made literal."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(cells: Iterable[Any]) -> list[Any]:
    """A CSV row with every cell passed through :func:`safe_cell`."""
    return [safe_cell(cell) for cell in cells]
