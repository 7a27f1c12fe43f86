"""Operators' tables as JSON, CSV or Excel, chosen by the request's Accept header: one writer for every
service's reports, so that a download looks the same wherever it comes from.

A ``Table`` is columns (a JSON key, a Chinese header for the files, number or text) and rows of values.
CSV is UTF-8 with a byte order mark (Excel reads Chinese headers correctly only with it); a text cell that
a spreadsheet would take for a formula (``= + - @``, or a tab or carriage return first) gets a leading
apostrophe, since rider ids, partner names and titles come from outside (Excel cells are written as
strings, which a spreadsheet never evaluates, so they stay as they are). Excel: XlsxWriter, header row in
bold and frozen, numbers as numbers, widths from the longest cell. An Accept naming neither file type
answers JSON, as FastAPI's routes do whatever the Accept; clients that want a file say so."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import xlsxwriter
from fastapi import Response

CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
JSON = "application/json"

# What a spreadsheet reads as the start of a formula (OWASP's CSV injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"
WIDEST_COLUMN = 60  # characters; a 1 MiB name must not make a column a mile wide


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"


@dataclass(frozen=True, slots=True)
class Column:
    key: str  # the JSON member
    header: str  # the file's column name (Chinese, for the sub-district's ledger)
    cells: Literal["number", "text"] = "number"  # how the file writes its cells


@dataclass(frozen=True, slots=True)
class Table:
    columns: tuple[Column, ...]
    rows: Sequence[Sequence[Any]]  # each in the order of ``columns``

    def headers(self) -> list[str]:
        return [c.header for c in self.columns]


def format_of(accept: str | None) -> Format:
    """The format an Accept header asks for: the first of CSV and Excel it names with a non-zero
    quality, else JSON (an unknown or missing Accept falls back to JSON, never 406)."""
    best: tuple[float, Format] = (0.0, Format.JSON)
    for part in (accept or "").split(","):
        media, _, params = part.strip().partition(";")
        wanted = {CSV: Format.CSV, XLSX: Format.XLSX}.get(media.strip().lower())
        if wanted is not None and (q := _quality(params)) > best[0]:
            best = (q, wanted)
    return best[1]


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet shows it without running it: a text starting like a formula is quoted."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(table: Table) -> bytes:
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.headers())
    writer.writerows([safe_cell(v) for v in row] for row in table.rows)
    return out.getvalue().encode("utf-8")


def to_xlsx(table: Table, sheet: str) -> bytes:
    out = io.BytesIO()
    # constant_memory: rows are written to disk as they come, so a 10,000-rider table costs little memory.
    book = xlsxwriter.Workbook(out, {"constant_memory": True, "in_memory": False, "strings_to_formulas": False})
    page = book.add_worksheet(sheet[:31])
    bold = book.add_format({"bold": True})
    widths = [_width(c.header) for c in table.columns]
    page.write_row(0, 0, table.headers(), bold)
    for r, row in enumerate(table.rows, start=1):
        for c, (column, value) in enumerate(zip(table.columns, row, strict=True)):
            if column.cells == "number" and isinstance(value, int | float):
                page.write_number(r, c, value)
            else:
                page.write_string(r, c, str(value))  # a string cell, never a formula
            widths[c] = max(widths[c], _width(str(value)))
    for c, width in enumerate(widths):
        page.set_column(c, c, min(width, WIDEST_COLUMN) + 2)
    page.freeze_panes(1, 0)
    book.close()
    return out.getvalue()


def _width(text: str) -> int:
    # A Chinese character is about two Latin ones wide in Excel's default font.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text[: WIDEST_COLUMN * 2])


async def download(table: Table, fmt: Literal[Format.CSV, Format.XLSX], filename: str, sheet: str) -> Response:
    """The table as a file to save: ``filename`` without its extension (ASCII, the header needs no escaping).
    The file is written in a worker thread: a month of 10,000 riders is a few hundred milliseconds of CPU
    that would otherwise stall every other request of the service's event loop (balance reads among them)."""
    if fmt is Format.CSV:
        body, media = await asyncio.to_thread(to_csv, table), f"{CSV}; charset=utf-8"
    else:
        body, media = await asyncio.to_thread(to_xlsx, table, sheet), XLSX
    disposition = f'attachment; filename="{filename}.{fmt.value}"'
    return Response(body, media_type=media, headers={"Content-Disposition": disposition, "Vary": "Accept"})


def table_responses(json_schema_ref: type[Any]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: a report's 200 in its three media types (JSON by its model, the files as binary)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        200: {
            "model": json_schema_ref,
            "description": "the report; `Accept: text/csv` or the Excel type gives it as a file to download",
            "content": {JSON: {}, CSV: binary, XLSX: binary},
        }
    }
