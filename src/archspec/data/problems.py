"""Data problems: what is wrong with which row and column, rendered `file:row:column: what — what to do`.

Checks collect every :class:`Problem` they find and raise one :class:`~archspec.errors.DataError`
listing them (torchtune's collect-then-raise pattern), so a user fixes a data file in one pass.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import DataError

#: problems listed in one error message; the rest are counted
MAX_LISTED = 20
#: problems listed per (column, code) group before the rest of the group is summarised
MAX_PER_GROUP = 5


@dataclass(frozen=True)
class Problem:
    """One problem in a data file.

    Attributes:
        code: stable identifier (``missing-column``, ``too-few-rows``, ``label``, ``nonfinite``,
            ``not-a-number``, ``missing-value``, ``vector``, ``vector-length``, ``image``, ``binary``,
            ``multilabel``, ``classes``).
        message: what is wrong (found vs expected).
        hint: what to do about it.
        row: 0-based data row (the DataFrame index, i.e. the position in the file), or ``None``.
        column: the column concerned, or ``None``.
    """

    code: str
    message: str
    hint: str = ""
    row: int | None = None
    column: str | None = None

    def render(self, file: str = "<data>") -> str:
        """``file:row:column: message — hint`` (row and column left out when unknown).

        Example:
            >>> Problem("nonfinite", "NaN", "fill it in", row=0, column="x").render("d.csv")
            'd.csv:2:x: NaN — fill it in'
        """
        where = [str(file)]
        if self.row is not None:
            where.append(str(row_number(file, self.row)))
        if self.column is not None:
            where.append(self.column)
        text = ":".join(where) + ": " + self.message
        return text + (f" — {self.hint}" if self.hint else "")


def row_number(file, row: int) -> int:
    """The row as a person finds it in the file: the line for CSV (header = line 1), else 1-based.

    Example:
        >>> row_number("a.csv", 0), row_number("a.jsonl", 0), row_number("a.parquet", 0)
        (2, 1, 1)
    """
    suffixes = [s.lower() for s in Path(str(file)).suffixes]
    header = 1 if any(s in (".csv", ".tsv") for s in suffixes) else 0
    return int(row) + 1 + header


def render_problems(problems: Iterable[Problem], file: str = "<data>", limit: int = MAX_LISTED) -> list[str]:
    """Lines for a list of problems: at most ``MAX_PER_GROUP`` of one kind in one column, ``limit`` in all."""
    problems = list(problems)
    groups: dict = defaultdict(list)
    for p in problems:
        groups[(p.column, p.code)].append(p)
    shown, hidden_in_groups = [], []
    for items in groups.values():
        shown += items[:MAX_PER_GROUP]
        if len(items) > MAX_PER_GROUP:
            hidden_in_groups.append((items[0], len(items) - MAX_PER_GROUP))
    # Problems about the whole file first, then in file order.
    shown.sort(key=lambda p: (p.row is not None, p.row or 0))
    lines = [p.render(file) for p in shown[:limit]]
    for first, n in hidden_in_groups:
        col = f":{first.column}" if first.column else ""
        lines.append(f"{file}{col}: … and {n} more row{'s' if n != 1 else ''} like this ({first.code})")
    if len(shown) > limit:
        lines.append(f"… and {len(shown) - limit} more problems not listed")
    return lines


def data_error(problems: list[Problem], file: str = "<data>", split: str | None = None) -> DataError:
    """A :class:`DataError` listing ``problems``; the list is kept on the error as ``.problems``.

    Example:
        >>> err = data_error([Problem("nonfinite", "NaN", row=3, column="x")], "d.csv", "train")
        >>> str(err).splitlines()[1]
        'd.csv:5:x: NaN'
    """
    n = len(problems)
    where = f" ({split} data)" if split else ""
    head = f"{file}{where}: {n} data problem{'s' if n != 1 else ''} found; fix the data and rerun"
    err = DataError("\n".join([head, *render_problems(problems, file)]))
    err.problems = list(problems)
    err.file = str(file)
    return err


def raise_if(problems: list[Problem], file: str = "<data>", split: str | None = None) -> None:
    """Raise :func:`data_error` when ``problems`` is not empty."""
    if problems:
        raise data_error(problems, file, split)
