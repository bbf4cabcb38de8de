"""Customer import files (jingwei.customers.importing): reading, column mapping, row checks.

No database. Every .xlsx here is made by openpyxl inside the test (nothing binary is committed).

What is proved here:
- .xlsx reads the first sheet (or a named one) with the row numbers Excel shows, past blank rows,
  a lying <dimension>, full-width spaces and a BOM in headers, numbers where phones should be
  (ints, floats, "1.38E10") and date cells; .xls, .xlsm, .xlsb, VBA inside .xlsx, password
  protected and corrupt files are refused with a Chinese message;
- zip bombs (huge shared strings, sheets, too many parts, one giant row) are refused before
  openpyxl inflates them; the byte, row, column and cell-length limits hold for both formats;
- .csv in UTF-8 with or without BOM, UTF-16 and GBK/GB18030 is detected and reported, and comma,
  tab or semicolon is sniffed with quoted delimiters and newlines inside cells;
- header aliases (Chinese, English, full-width, "（必填）") map to fields; unknown columns are
  reported; a missing name or identity column, or two columns for one field, is fatal;
- phones, emails, tags, levels, Excel quirks and in-file duplicates are checked row by row;
- hypothesis: CSV in UTF-8, UTF-8-BOM and GBK round-trips; junk and mutated workbooks raise
  nothing but ImportFileError; every error's row number points at the row holding its value.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jingwei.core.errors import DomainError
from jingwei.customers import importing
from jingwei.customers.importing import (
    ALIASES,
    FIELDS,
    ColumnMap,
    CustomerRow,
    ImportFileError,
    Limits,
    SourceRow,
    Table,
    cell_text,
    map_columns,
    normalize_email,
    normalize_phone,
    read_table,
    split_tags,
    validate_rows,
)

HYPOTHESIS = settings(
    max_examples=int(os.environ.get("IMPORT_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MiB = 1024 * 1024
HEADER = ["姓名", "手机", "邮箱", "等级", "备注"]
LEVELS = ["A", "B", "VIP"]


# ---------------------------------------------------------------------------------------------
# Helpers


def xlsx(
    rows: Sequence[Sequence[Any]],
    *,
    title: str = "客户",
    more_sheets: dict[str, Sequence[Sequence[Any]]] | None = None,
    number_format: dict[str, str] | None = None,
) -> bytes:
    """A real workbook: `rows` appended to the first sheet ([] leaves a blank row)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = title
    for row in rows:
        ws.append(list(row))
    for cell_ref, fmt in (number_format or {}).items():
        ws[cell_ref].number_format = fmt
    for name, sheet_rows in (more_sheets or {}).items():
        other = wb.create_sheet(name)
        for row in sheet_rows:
            other.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def rezip(
    data: bytes,
    edit: Callable[[str, bytes], bytes] | None = None,
    *,
    extra: dict[str, bytes] | None = None,
) -> bytes:
    """The same zip with members passed through `edit` and `extra` members added."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            body = src.read(info.filename)
            dst.writestr(info.filename, edit(info.filename, body) if edit else body)
        for name, body in (extra or {}).items():
            dst.writestr(name, body)
    return out.getvalue()


def edit_sheet(data: bytes, change: Callable[[str], str]) -> bytes:
    def edit(name: str, body: bytes) -> bytes:
        if name == "xl/worksheets/sheet1.xml":
            return change(body.decode()).encode()
        return body

    return rezip(data, edit)


def csv_bytes(
    rows: Sequence[Sequence[str]],
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
    lineterminator: str = "\r\n",
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=lineterminator)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def refused(code: str, data: bytes, filename: str, **kwargs: Any) -> ImportFileError:
    with pytest.raises(ImportFileError) as info:
        read_table(data, filename, **kwargs)
    assert info.value.code == code, info.value.message
    assert re.search(r"[\u4e00-\u9fff]", info.value.message), "messages are Chinese"
    return info.value


def table(headers: Sequence[str], *rows: Sequence[Any], start: int = 2) -> Table:
    return Table(
        headers=tuple(headers),
        header_row=start - 1,
        rows=tuple(SourceRow(start + i, tuple(r)) for i, r in enumerate(rows)),
        format="csv",
    )


def check(
    headers: Sequence[str], *rows: Sequence[Any], levels: Sequence[str] | None = LEVELS
) -> tuple[list[CustomerRow], list[importing.RowError]]:
    t = table(headers, *rows)
    return validate_rows(t, map_columns(t), levels=levels)


def values(t: Table) -> list[tuple[int, tuple[Any, ...]]]:
    return [(r.number, r.cells) for r in t.rows]


# ---------------------------------------------------------------------------------------------
# .xlsx


def test_xlsx_rows_keep_the_numbers_excel_shows() -> None:
    data = xlsx(
        [
            [],  # a blank first row: the header is row 2
            ["姓名", "手机", "备注"],
            ["张三", "13800001234", "第一"],
            [],
            [None, "  ", "\u3000"],  # whitespace only: blank
            ["李四", "13900001234", None],
            [],
            [],
        ]
    )
    t = read_table(data, "客户.xlsx")
    assert t.format == "xlsx" and t.sheet == "客户" and t.sheets == ("客户",)
    assert t.headers == ("姓名", "手机", "备注") and t.header_row == 2
    assert values(t) == [
        (3, ("张三", "13800001234", "第一")),
        (6, ("李四", "13900001234", None)),
    ]


def test_xlsx_header_with_full_width_spaces_and_bom_is_trimmed_and_mapped() -> None:
    data = xlsx(
        [
            ["\ufeff　姓　名　", " 手机号（必填） ", "\u3000E-Mail\u200b", "　标签　"],
            ["王五", "13800001234", "w@example.com", "老客户，VIP"],
        ]
    )
    t = read_table(data, "x.xlsx")
    assert t.headers == ("姓　名", "手机号（必填）", "E-Mail", "标签")
    columns = map_columns(t)
    assert dict(columns.fields) == {"name": 0, "phone": 1, "email": 2, "tags": 3}
    good, errors = validate_rows(t, columns)
    assert errors == []
    assert good[0].tags == ("老客户", "VIP")


def test_xlsx_phone_numbers_stored_as_numbers_come_back_as_digits() -> None:
    data = xlsx(
        [
            ["姓名", "手机"],
            ["甲", 13800001234.0],  # a float
            ["乙", 13900001234],  # an int
            ["丙", 8613700001234],  # with the country code, as a number
            ["丁", "PLACEHOLDER"],
        ],
        number_format={"B2": "0", "B3": "0.00"},
    )
    # Some tools write the float itself: <v>1.3600001234E10</v>.
    data = edit_sheet(
        data,
        lambda xml: xml.replace(
            '<c r="B5" t="inlineStr"><is><t>PLACEHOLDER</t></is></c>',
            '<c r="B5" t="n"><v>1.3600001234E10</v></c>',
        ),
    )
    t = read_table(data, "x.xlsx")
    assert isinstance(t.rows[3].cells[1], float)
    good, errors = validate_rows(t, map_columns(t))
    assert errors == []
    assert [c.phone for c in good] == ["13800001234", "13900001234", "13700001234", "13600001234"]


def test_xlsx_dates_are_datetimes_and_read_as_iso_text() -> None:
    data = xlsx(
        [
            ["姓名", "手机", "备注", "来源"],
            ["甲", datetime(2024, 3, 1), datetime(2024, 3, 1, 9, 30), date(2023, 12, 31)],
        ]
    )
    t = read_table(data, "x.xlsx")
    assert t.rows[0].cells[1] == datetime(2024, 3, 1)
    assert isinstance(t.rows[0].cells[3], datetime)
    good, errors = validate_rows(t, map_columns(t))
    assert good == []
    assert errors == [
        {
            "row": 2,
            "column": "手机",
            "value": "2024-03-01",
            "reason": "手机号单元格是日期/时间格式，请把该列设为文本后重新填写",
        }
    ]
    assert cell_text(t.rows[0].cells[2]) == "2024-03-01 09:30:00"
    assert cell_text(t.rows[0].cells[3]) == "2023-12-31"


def test_xlsx_first_sheet_by_default_or_one_by_name() -> None:
    data = xlsx(
        [["姓名", "手机"], ["甲", "13800001234"]],
        title="说明",
        more_sheets={"导入": [["姓名", "邮箱"], ["乙", "b@example.com"], ["丙", "c@example.com"]]},
    )
    first = read_table(data, "x.xlsx")
    assert first.sheet == "说明" and first.sheets == ("说明", "导入") and len(first.rows) == 1
    named = read_table(data, "x.xlsx", sheet="导入")
    assert named.sheet == "导入" and named.headers == ("姓名", "邮箱") and len(named.rows) == 2
    error = refused("sheet_not_found", data, "x.xlsx", sheet="客户")
    assert "说明、导入" in error.message


@pytest.mark.parametrize("fmt", ["xlsx", "csv", "tsv"])
def test_a_title_row_above_the_header_can_be_skipped(fmt: str) -> None:
    rows = [["2024 年客户导入模板"], [], ["姓名", "手机"], ["甲", "13800001234"]]
    data, name = {
        "xlsx": lambda: (xlsx(rows), "x.xlsx"),
        "csv": lambda: (csv_bytes(rows), "x.csv"),
        "tsv": lambda: (csv_bytes(rows, delimiter="\t"), "x.csv"),
    }[fmt]()
    t = read_table(data, name, header_row=2)
    assert t.header_row == 3 and t.headers == ("姓名", "手机")
    assert [r.number for r in t.rows] == [4]
    with pytest.raises(ImportFileError, match="缺少"):
        map_columns(read_table(data, name))  # the title taken for the header


def test_xlsx_with_a_lying_dimension_is_read_in_full() -> None:
    data = xlsx([["姓名", "手机"], ["甲", "13800001234"], ["乙", "13900001234"]])
    data = edit_sheet(
        data, lambda xml: re.sub(r'<dimension ref="[^"]*"/>', '<dimension ref="A1"/>', xml)
    )
    assert [r.number for r in read_table(data, "x.xlsx").rows] == [2, 3]


def test_xlsx_formulas_read_as_their_cached_values() -> None:
    data = xlsx([["姓名", "手机"], ["甲", "=1+1"]])
    data = edit_sheet(
        data,
        lambda xml: re.sub(r'<c r="B2"[^>]*>.*?</c>', '<c r="B2"><f>1+1</f><v>2</v></c>', xml),
    )
    assert read_table(data, "x.xlsx").rows[0].cells == ("甲", 2)


@pytest.mark.parametrize(
    ("filename", "code"),
    [
        ("客户.xls", "legacy_excel"),
        ("客户.XLSM", "macro_workbook"),
        ("客户.xltm", "macro_workbook"),
        ("客户.xlsb", "unsupported_format"),
        ("客户.numbers", "unsupported_format"),
        ("客户", "unsupported_format"),
        ("C:\\Users\\张三\\Desktop\\客户.pdf", "unsupported_format"),
    ],
)
def test_refuses_other_spreadsheet_kinds(filename: str, code: str) -> None:
    refused(code, xlsx([["姓名", "手机"]]), filename)


def test_windows_paths_and_upper_case_extensions_are_fine() -> None:
    data = xlsx([["姓名", "手机"], ["甲", "13800001234"]])
    assert read_table(data, "C:\\Users\\张三\\Desktop\\客户.XLSX").rows


def test_refuses_vba_inside_an_xlsx_and_macro_content_types() -> None:
    base = xlsx([["姓名", "手机"], ["甲", "13800001234"]])
    refused("macro_workbook", rezip(base, extra={"xl/vbaProject.bin": b"\0" * 64}), "x.xlsx")

    def macro_types(name: str, body: bytes) -> bytes:
        if name == "[Content_Types].xml":
            return body.replace(
                b"spreadsheetml.sheet.main+xml", b"ms-excel.sheet.macroEnabled.main+xml"
            )
        return body

    refused("macro_workbook", rezip(base, macro_types), "x.xlsx")


def test_refuses_ole_files_named_xlsx_and_workbooks_named_csv() -> None:
    ole = bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 504
    error = refused("legacy_excel", ole, "加密.xlsx")
    assert "密码" in error.message
    refused("wrong_extension", xlsx([["姓名", "手机"]]), "客户.csv")
    refused("wrong_extension", ole, "客户.csv")
    refused("corrupt_file", "姓名,手机\n".encode(), "客户.xlsx")


def test_refuses_corrupt_workbooks() -> None:
    data = xlsx([["姓名", "手机"], ["甲", "13800001234"]])
    refused("corrupt_file", data[: len(data) // 2], "x.xlsx")
    no_workbook = rezip(data, lambda name, body: b"junk" if name == "xl/workbook.xml" else body)
    refused("corrupt_file", no_workbook, "x.xlsx")
    bad_sheet = edit_sheet(data, lambda xml: xml.replace("</sheetData>", ""))
    refused("corrupt_file", bad_sheet, "x.xlsx")
    bad_index = edit_sheet(
        data, lambda xml: xml.replace('<c r="A2" t="inlineStr">', '<c r="A2" t="s"><v>99</v>')
    )
    refused("corrupt_file", bad_index, "x.xlsx")


def test_refuses_xml_entity_bombs() -> None:
    data = xlsx([["姓名", "手机"], ["甲", "13800001234"]])
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    )
    data = edit_sheet(
        data, lambda xml: bomb + re.sub(r"^<\?xml[^>]*>", "", xml).replace("甲", "&lol2;")
    )
    refused("corrupt_file", data, "x.xlsx")


# ---- limits


def test_huge_shared_strings_are_refused_before_opening_with_default_limits() -> None:
    base = xlsx([["姓名", "手机"], ["甲", "13800001234"]])
    # 65 MiB inflated, a few hundred KB on the wire.
    bomb = b"<sst>" + b"<si><t>x</t></si>" * (65 * MiB // 17) + b"</sst>"
    data = rezip(base, extra={"xl/sharedStrings.xml": bomb})
    assert len(data) < 1 * MiB
    error = refused("zip_bomb", data, "x.xlsx")
    assert "共享字符串表" in error.message and "64.0 MB" in error.message


def test_zip_limits_on_sheets_parts_totals_and_entries() -> None:
    data = xlsx([["姓名", "手机"], *[["甲", f"138{i:08d}"] for i in range(50)]])
    sheet_size = zipfile.ZipFile(io.BytesIO(data)).getinfo("xl/worksheets/sheet1.xml").file_size
    assert read_table(data, "x.xlsx", limits=Limits(max_sheet_xml_bytes=sheet_size))
    error = refused("zip_bomb", data, "x.xlsx", limits=Limits(max_sheet_xml_bytes=sheet_size - 1))
    assert "工作表" in error.message
    error = refused("zip_bomb", data, "x.xlsx", limits=Limits(max_other_xml_bytes=1000))
    assert "内部文件" in error.message
    refused("zip_bomb", data, "x.xlsx", limits=Limits(max_uncompressed_bytes=sheet_size))
    many = rezip(data, extra={f"xl/media/{i}.png": b"" for i in range(20)})
    refused("zip_bomb", many, "x.xlsx", limits=Limits(max_zip_entries=20))


def test_pictures_are_exempt_only_while_they_do_not_compress() -> None:
    data = xlsx([["姓名", "手机"], ["甲", "13800001234"]])
    picture = rezip(data, extra={"xl/media/image1.png": os.urandom(64 * 1024)})
    assert read_table(picture, "x.xlsx", limits=Limits(max_other_xml_bytes=32 * 1024)).rows
    disguised = rezip(data, extra={"xl/media/image1.png": b"\0" * (17 * MiB)})
    error = refused("zip_bomb", disguised, "x.xlsx")
    assert "image1.png" in error.message


def test_giant_elements_in_any_sheet_are_refused_before_opening() -> None:
    cols = "<cols>" + '<col min="1" max="1" width="9"/>' * 5000 + "</cols>"
    data = xlsx([["姓名", "手机"], ["甲", "13800001234"]], more_sheets={"其他": [["x"]]})

    def edit(name: str, body: bytes) -> bytes:
        if name == "xl/worksheets/sheet2.xml":
            return body.replace(b"<sheetData>", cols.encode() + b"<sheetData>")
        return body

    bloated = rezip(data, edit)
    limits = Limits(max_row_xml_bytes=64 * 1024)
    assert read_table(data, "x.xlsx", limits=limits).rows
    refused("zip_bomb", bloated, "x.xlsx", limits=limits)


def test_one_giant_row_is_refused_before_openpyxl_parses_it() -> None:
    wide = xlsx([["姓名", "手机"], ["甲", "13800001234", *(["x" * 50] * 2000)]])
    limits = Limits(max_row_xml_bytes=64 * 1024, max_columns=5000)
    error = refused("zip_bomb", wide, "x.xlsx", limits=limits)
    assert "有一行" in error.message
    # Many ordinary rows are fine under the same limit.
    tall = xlsx([["姓名", "手机"], *[["甲", f"138{i:08d}"] for i in range(3000)]])
    assert len(read_table(tall, "x.xlsx", limits=limits).rows) == 3000


def test_row_number_beyond_excel_is_refused() -> None:
    data = xlsx([["姓名", "手机"], ["甲", "13800001234"]])
    data = edit_sheet(
        data,
        lambda xml: xml.replace('<row r="2">', '<row r="2000000">').replace(
            'r="A2"', 'r="A2000000"'
        ),
    )
    refused("too_many_rows", data, "x.xlsx")


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_row_column_and_cell_limits(fmt: str) -> None:
    def make(rows: list[list[str]]) -> tuple[bytes, str]:
        if fmt == "xlsx":
            return xlsx(rows), "x.xlsx"
        return csv_bytes(rows), "x.csv"

    rows = [["姓名", "手机"], *[["甲", f"138{i:08d}"] for i in range(10)]]
    data, name = make([*rows, [], ["", ""], []])
    assert len(read_table(data, name, limits=Limits(max_rows=10)).rows) == 10  # blanks not rows
    refused("too_many_rows", *make(rows), limits=Limits(max_rows=9))

    wide, name = make([["姓名", "手机", "", "", ""], ["甲", "1", "", "", "x"]])
    assert read_table(wide, name, limits=Limits(max_columns=5)).headers[-1] == ""
    error = refused("too_many_columns", wide, name, limits=Limits(max_columns=4))
    assert "第 2 行有 5 列" in error.message

    long, name = make([["姓名", "手机"], ["甲" * 101, "1"]])
    assert read_table(long, name, limits=Limits(max_cell_chars=101)).rows
    error = refused("cell_too_long", long, name, limits=Limits(max_cell_chars=100))
    assert "第 2 行 A 列" in error.message


def test_size_and_empty_files() -> None:
    refused("empty_file", b"", "x.csv")
    refused("empty_file", b"\r\n,,\r\n \r\n", "x.csv")
    refused("empty_file", xlsx([]), "x.xlsx")
    data = csv_bytes([["姓名", "手机"], ["甲", "13800001234"]])
    assert read_table(data, "x.csv", limits=Limits(max_bytes=len(data)))
    error = refused("file_too_large", data, "x.csv", limits=Limits(max_bytes=len(data) - 1))
    assert "超过上限" in error.message
    header_only = read_table("姓名,手机\r\n".encode(), "x.csv")
    assert header_only.rows == () and header_only.headers == ("姓名", "手机")


# ---------------------------------------------------------------------------------------------
# .csv


@pytest.mark.parametrize(
    ("encoding", "reported"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),
        ("gbk", "gb18030"),
        ("gb18030", "gb18030"),
    ],
)
def test_csv_encodings_are_detected(encoding: str, reported: str) -> None:
    rows = [["姓名", "手机", "备注"], ["张三丰", "13800001234", "武当山，“太极”"]]
    t = read_table(csv_bytes(rows, encoding=encoding), "客户.csv")
    assert t.encoding == reported and t.format == "csv"
    assert t.headers == ("姓名", "手机", "备注")  # no BOM left in the first header
    assert t.rows[0].cells == ("张三丰", "13800001234", "武当山，“太极”")


def test_csv_gb18030_only_characters() -> None:
    rows = [["姓名", "手机"], ["\U00020000\u9fa6", "13800001234"]]  # outside GBK
    t = read_table(csv_bytes(rows, encoding="gb18030"), "x.csv")
    assert t.encoding == "gb18030" and t.rows[0].cells[0] == "\U00020000\u9fa6"


def test_csv_undecodable_and_binary_files() -> None:
    error = refused("unknown_encoding", b"\x81\xff name,phone\n\x80\xff", "x.csv")
    assert "UTF-8" in error.message
    refused("binary_content", b"name,phone\n\x00\x01,2\n", "x.csv")
    # A BOM is believed: invalid bytes after it are not re-read as GB18030.
    error = refused("unknown_encoding", codecs.BOM_UTF8 + "姓名\n".encode("gbk"), "x.csv")
    assert "UTF-8-SIG" in error.message
    refused("unknown_encoding", codecs.BOM_UTF16_LE + b"a\x00\x00\xd8", "x.csv")


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_csv_delimiter_is_sniffed_past_quoted_delimiters(delimiter: str) -> None:
    rows = [
        ["姓名", "手机", "标签", "备注"],
        ["张三", "13800001234", "a,b;c\td", "多行\n备注, 含; 分隔\t符"],
        ["李四", "13900001234", "", ""],
    ]
    t = read_table(csv_bytes(rows, delimiter=delimiter), "x.csv")
    assert t.delimiter == delimiter
    assert [list(r.cells) for r in t.rows] == rows[1:]


def test_csv_row_numbers_count_records_not_lines() -> None:
    data = '姓名,手机,备注\n张三,138,"第一行\n第二行\n第三行"\n\n李四,139,x\n'.encode()
    t = read_table(data, "x.csv")
    assert [r.number for r in t.rows] == [2, 4]


def test_csv_line_endings_and_tsv_extension() -> None:
    for ending in ("\n", "\r\n", "\r"):
        t = read_table(csv_bytes([["姓名", "手机"], ["甲", "1"]], lineterminator=ending), "x.txt")
        assert t.rows[0].cells == ("甲", "1")
    t = read_table(csv_bytes([["姓名", "手机"], ["甲", "1"]], delimiter="\t"), "x.tsv")
    assert t.delimiter == "\t"


def test_csv_cells_longer_than_the_csv_module_allows() -> None:
    data = ("姓名,备注\n甲," + "x" * 200_000 + "\n").encode()
    error = refused("malformed_csv", data, "x.csv", limits=Limits(max_cell_chars=300_000))
    assert "过长" in error.message
    refused("malformed_csv", data, "x.csv")
    data = ("姓名,备注\n甲," + "x" * 40_000 + "\n").encode()
    refused("cell_too_long", data, "x.csv")


def test_csv_cells_are_kept_verbatim() -> None:
    t = read_table("姓名,手机\n  张三 ,'13800001234\n".encode(), "x.csv")
    assert t.rows[0].cells == ("  张三 ", "'13800001234")


# ---------------------------------------------------------------------------------------------
# Columns


@pytest.mark.parametrize(
    ("header", "field"),
    [
        (alias, name)
        for name, aliases in ALIASES.items()
        for alias in (
            *aliases,
            name,
            aliases[0].upper(),
            f" {aliases[0]}（必填）",
            f"*{aliases[0]}",
        )
    ],
)
def test_header_aliases(header: str, field: str) -> None:
    if field == "name":
        headers = [header, "手机"]
    elif field in importing.IDENTITY_FIELDS:
        headers = [header, "姓名"]
    else:
        headers = [header, "姓名", "手机"]
    columns = map_columns(table(headers))
    assert columns.fields[field] == 0


def test_alias_keys_do_not_collide() -> None:
    owners: dict[str, str] = {}
    for field, aliases in ALIASES.items():
        for alias in (*aliases, field):
            key = importing._header_key(alias)
            assert owners.setdefault(key, field) == field, (alias, owners[key], field)
    assert set(ALIASES) == set(FIELDS)


def test_full_width_english_headers_match() -> None:
    columns = map_columns(table(["ＮＡＭＥ", "Ｍｏｂｉｌｅ", "ｅ－ｍａｉｌ"]))
    assert dict(columns.fields) == {"name": 0, "phone": 1, "email": 2}


def test_unknown_columns_are_reported_not_fatal() -> None:
    t = table(["姓名", "手机", "生日", "", "", "爱好"], ["甲", "1", "x", "有数据", None, None])
    columns = map_columns(t)
    assert columns.unknown == ("生日", "（D 列，无表头）", "爱好")
    assert dict(columns.fields) == {"name": 0, "phone": 1}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (["手机", "邮箱"], ["缺少必填列「姓名」"]),
        (["姓名", "公司", "备注"], ["缺少身份列"]),
        (["公司"], ["缺少必填列「姓名」", "缺少身份列"]),
    ],
)
def test_missing_required_columns_are_fatal(headers: list[str], expected: list[str]) -> None:
    with pytest.raises(ImportFileError) as info:
        map_columns(table(headers))
    assert info.value.code == "missing_columns"
    for text in expected:
        assert text in info.value.message


def test_each_identity_column_alone_is_enough() -> None:
    for header in ("手机", "邮箱", "微信UnionID", "企业微信"):
        assert map_columns(table(["姓名", header]))


def test_two_columns_for_one_field_are_fatal() -> None:
    with pytest.raises(ImportFileError) as info:
        map_columns(table(["姓名", "手机", "手机号"]))
    assert info.value.code == "duplicate_column"
    assert "「手机」和「手机号」" in info.value.message


def test_explicit_mapping_wins_and_can_skip_columns() -> None:
    t = table(["客户", "电话", "手机", "内部备注"], ["甲", "13800001234", "13900001234", "x"])
    columns = map_columns(t, {"客户": "name", "电话": None, "内部备注": "note"})
    assert dict(columns.fields) == {"name": 0, "phone": 2, "note": 3}
    assert columns.ignored == ("电话",) and columns.unknown == ()
    good, errors = validate_rows(t, columns)
    assert errors == [] and good[0].phone == "13900001234" and good[0].note == "x"
    # Matched loosely too, like the aliases.
    assert map_columns(t, {" 客 户 ": "name", "电话": None}).fields["name"] == 0


@pytest.mark.parametrize(
    "mapping",
    [{"客户": "nickname"}, {"不存在的列": "name"}],
)
def test_bad_explicit_mapping_is_fatal(mapping: dict[str, str]) -> None:
    with pytest.raises(ImportFileError) as info:
        map_columns(table(["客户", "手机"]), mapping)
    assert info.value.code == "invalid_mapping"


# ---------------------------------------------------------------------------------------------
# Rows


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800001234", "13800001234"),
        (" 138 0000 1234 ", "13800001234"),
        ("138-0000-1234", "13800001234"),
        ("+86 138 0000 1234", "13800001234"),
        ("+86-13800001234", "13800001234"),
        ("(+86)13800001234", "13800001234"),
        ("0086 13800001234", "13800001234"),
        ("8613800001234", "13800001234"),
        ("１３８００００１２３４", "13800001234"),
        ("'13800001234", "13800001234"),
        ('="13800001234"', "13800001234"),
        ("\t13800001234", "13800001234"),
        ("13800001234.0", "13800001234"),
        ("1.3800001234E+10", "13800001234"),
        ("1.3800001234e10", "13800001234"),
        (13800001234, "13800001234"),
        (13800001234.0, "13800001234"),
        (1.3800001234e10, "13800001234"),
        (8613800001234.0, "13800001234"),
        ("+852 9123 4567", "+85291234567"),
        ("00852 9123 4567", "+85291234567"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_phone_normalisation(raw: Any, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("12800001234", "手机号格式不正确"),
        ("1380000123", "应为 11 位数字，这里是 10 位"),
        ("138000012345", "应为 11 位数字"),
        ("021-62345678", "手机号格式不正确"),
        ("1.38E+10", "科学计数法"),
        ("+86 21 6234 5678", "+86 之后不是有效的 11 位大陆手机号"),
        ("+0123456789", "国际号码格式不正确"),
        ("+123", "国际号码格式不正确"),
        ("+852 9123 4567 ext 8", "手机号格式不正确"),
        ("138.0000.1234", "手机号格式不正确"),
        ("电话", "手机号格式不正确"),
        (datetime(2024, 1, 1), "日期"),
        (True, "手机号格式不正确"),
        (1.5, "手机号格式不正确"),
    ],
)
def test_bad_phones(raw: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        normalize_phone(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a@example.com", "a@example.com"),
        (" Zhang.San+crm@Example.COM.CN ", "Zhang.San+crm@example.com.cn"),
        ("ｌｉ＠ｑｑ．ｃｏｍ", "li@qq.com"),
        ("o'brien@mail.example-corp.io", "o'brien@mail.example-corp.io"),
    ],
)
def test_email_normalisation(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "a@",
        "@example.com",
        "a@b",
        "a@@example.com",
        "a b@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a@example.c",
        "a@-example.com",
        "a@qq。com",
        "张三@example.com",
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_bad_emails(raw: str) -> None:
    with pytest.raises(ValueError, match="邮箱"):
        normalize_email(raw)


def test_tags_split_on_every_separator_and_trimmed() -> None:
    assert split_tags(" 老客户，VIP;华东；重点、 回访 |投诉｜VIP,, ") == (
        "老客户",
        "VIP",
        "华东",
        "重点",
        "回访",
        "投诉",
    )
    assert split_tags(None) == () and split_tags("　") == ()


def test_a_clean_row_is_normalised() -> None:
    headers = ["姓名", "公司", "手机", "邮箱", "微信UnionID", "external_userid", "区域"]
    headers += ["负责人", "等级", "来源", "标签", "备注"]
    row: list[Any] = [
        " 张三 ",
        "经纬　科技",
        "+86 138-0000-1234",
        "ZS@Example.com",
        "o6_bmjrPTlm6_2sgVt7hMZOPfL2M",
    ]
    row += ["wmXXXX-abc_123", "华东", 1001.0, "vip", "'展会", "a，b", "  第一行\n第二行 "]
    good, errors = check(headers, row)
    assert errors == []
    assert good == [
        CustomerRow(
            row=2,
            name="张三",
            company="经纬 科技",
            phone="13800001234",
            email="ZS@example.com",
            wechat_unionid="o6_bmjrPTlm6_2sgVt7hMZOPfL2M",
            wecom_external_userid="wmXXXX-abc_123",
            region="华东",
            owner="1001",
            level="VIP",
            source="展会",
            tags=("a", "b"),
            note="第一行\n第二行",
        )
    ]


def test_levels_come_from_the_allowed_list() -> None:
    headers = ["姓名", "手机", "等级"]
    good, errors = check(headers, ["甲", "13800001234", "ｖｉｐ"], ["乙", "13900001234", "C"])
    assert [g.level for g in good] == ["VIP"]
    assert errors == [
        {"row": 3, "column": "等级", "value": "C", "reason": "等级「C」不在允许的取值中：A、B、VIP"}
    ]
    good, errors = check(headers, ["乙", "13900001234", "C"], levels=None)
    assert errors == [] and good[0].level == "C"
    _, errors = check(headers, ["乙", "13900001234", "C"], levels=[])
    assert "未设置任何等级" in errors[0]["reason"]


def test_duplicates_within_the_file_name_the_first_row() -> None:
    headers = ["姓名", "手机", "邮箱"]
    good, errors = check(
        headers,
        ["甲", "13800001234", "a@example.com"],  # row 2
        ["乙", "+86 138 0000 1234", "b@example.com"],  # row 3: same phone
        ["丙", "", "A@EXAMPLE.com"],  # row 4: same email, other case
        ["丁", "139", "d@example.com"],  # row 5: bad phone, registers the email
        ["戊", "", "d@example.com"],  # row 6: duplicate of a bad row's email
    )
    assert [g.row for g in good] == [2]
    assert errors == [
        {
            "row": 3,
            "column": "手机",
            "value": "+86 138 0000 1234",
            "reason": "与第 2 行的手机号重复",
        },
        {"row": 4, "column": "邮箱", "value": "A@EXAMPLE.com", "reason": "与第 2 行的邮箱重复"},
        {"row": 5, "column": "手机", "value": "139", "reason": "手机号应为 11 位数字，这里是 3 位"},
        {"row": 6, "column": "邮箱", "value": "d@example.com", "reason": "与第 5 行的邮箱重复"},
    ]


def test_name_and_one_identity_are_required_per_row() -> None:
    headers = ["姓名", "公司", "邮箱", "手机"]
    good, errors = check(
        headers,
        ["\u3000", "经纬", "a@example.com", ""],
        ["乙", "经纬", " ", None],
        ["丙", "", "bad", ""],  # a bad identity is reported as such, not as missing
    )
    assert good == []
    assert errors == [
        {"row": 2, "column": "姓名", "value": "", "reason": "姓名不能为空"},
        {
            "row": 3,
            "column": "邮箱",
            "value": "",
            "reason": "请至少填写一项：手机号、邮箱、微信 UnionID、企业微信外部联系人 ID",
        },
        {"row": 4, "column": "邮箱", "value": "bad", "reason": "邮箱格式不正确"},
    ]


def test_errors_in_one_row_come_in_column_order() -> None:
    headers = ["备注", "邮箱", "姓名", "手机", "等级"]
    _, errors = check(headers, ["x", "bad", "", "1", "Z"])
    assert [e["column"] for e in errors] == ["邮箱", "姓名", "手机", "等级"]
    assert {e["row"] for e in errors} == {2}


def test_lengths_and_id_characters() -> None:
    headers = ["姓名", "手机", "来源", "微信UnionID", "标签"]
    _, errors = check(
        headers,
        ["甲" * 101, "13800001234", "x" * 51, "微信号", ",".join(f"t{i}" for i in range(51))],
        ["乙", "13900001234", "", "", "t" * 51],
    )
    reasons = [(e["row"], e["column"], e["reason"]) for e in errors]
    assert reasons == [
        (2, "姓名", "姓名超过 100 个字符（当前 101 个）"),
        (2, "来源", "来源超过 50 个字符（当前 51 个）"),
        (2, "微信UnionID", "只能包含英文字母、数字和 _ - . : @"),
        (2, "标签", "标签最多 50 个，这里有 51 个"),
        (3, "标签", f"标签「{'t' * 20}…」超过 50 个字符"),
    ]


def test_excel_quirks_in_text_cells() -> None:
    assert cell_text("'张三") == "张三"
    assert cell_text('="0012"') == "0012"
    assert cell_text(" \u3000\ufeff\u200b ") == ""
    assert cell_text("张\u3000 三\n丰") == "张 三 丰"
    assert cell_text("'引用'\n原文  ", multiline=True) == "'引用'\n原文"
    assert cell_text(1001.0) == "1001" and cell_text(1.25) == "1.25" and cell_text(True) == "TRUE"
    assert cell_text(None) == ""


def test_import_file_error_is_a_domain_error() -> None:
    error = ImportFileError("文件为空", code="empty_file")
    assert isinstance(error, DomainError) and error.status == 422 and error.message == "文件为空"
    assert ImportFileError("x").code == "import_file_invalid"


def test_column_map_names_headers() -> None:
    columns = ColumnMap(headers=("姓名", "手机"), fields={"name": 0, "phone": 1})
    assert columns.header("phone") == "手机"


# ---------------------------------------------------------------------------------------------
# Properties

CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
NAMES = st.text(CJK, min_size=1, max_size=4)
MOBILES = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
NOTE_TEXT = st.text(st.sampled_from(list("备注ab1 ,;\t\n\"'，；、|")) | CJK, max_size=30).map(
    lambda s: s.strip()
)


@HYPOTHESIS
@given(
    rows=st.lists(st.tuples(NAMES, MOBILES, NOTE_TEXT), min_size=1, max_size=20),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gbk"]),
    delimiter=st.sampled_from([",", "\t", ";"]),
    lineterminator=st.sampled_from(["\r\n", "\n"]),
)
def test_csv_round_trips_in_every_encoding(
    rows: list[tuple[str, str, str]], encoding: str, delimiter: str, lineterminator: str
) -> None:
    header = ["姓名", "手机", "备注"]
    data = csv_bytes(
        [header, *rows], encoding=encoding, delimiter=delimiter, lineterminator=lineterminator
    )
    if encoding == "gbk":
        # Some GBK byte strings are valid UTF-8 as well; those cannot be told apart.
        try:
            data.decode("utf-8")
            assume(False)
        except UnicodeDecodeError:
            pass
    t = read_table(data, "客户.csv")
    assert t.encoding == {"gbk": "gb18030"}.get(encoding, encoding)
    assert t.delimiter == delimiter
    assert t.headers == tuple(header)
    assert [r.cells for r in t.rows] == [tuple(r) for r in rows]
    assert [r.number for r in t.rows] == list(range(2, len(rows) + 2))
    good, errors = validate_rows(t, map_columns(t))
    duplicates = len(rows) - len({r[1] for r in rows})
    assert len(errors) == duplicates
    assert len(good) + len(errors) == len(rows)


JUNK_NAMES = st.sampled_from(["x.csv", "x.xlsx", "x.txt", "x.tsv", "x.xls", "x", "x.xlsm"])


def _only_import_errors(data: bytes, filename: str) -> None:
    try:
        t = read_table(data, filename, limits=Limits(max_bytes=64 * 1024))
        columns = map_columns(t)
        validate_rows(t, columns, levels=LEVELS)
    except ImportFileError as exc:
        assert exc.message and exc.code


@HYPOTHESIS
@given(
    data=st.binary(max_size=2000)
    | st.binary(max_size=500).map(lambda b: b"PK\x03\x04" + b)
    | st.binary(max_size=500).map(lambda b: codecs.BOM_UTF8 + b)
    | st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")),
    filename=JUNK_NAMES,
)
def test_junk_raises_nothing_but_import_file_error(data: bytes, filename: str) -> None:
    _only_import_errors(data, filename)


@HYPOTHESIS
@given(text=st.text(st.sampled_from(list("姓名手机邮箱,;\t\n\r\"'= 1386@.a\u3000")), max_size=400))
def test_csv_like_text_raises_nothing_but_import_file_error(text: str) -> None:
    for encoding in ("utf-8", "gb18030"):
        _only_import_errors(text.encode(encoding), "x.csv")


_WORKBOOK = xlsx(
    [
        ["姓名", "手机", "邮箱", "等级", "标签", "备注"],
        ["张三", 13800001234, "a@example.com", "A", "x,y", datetime(2024, 1, 1)],
        ["李四", "139 0000 1234", "b@example.com", "B", "", "多行\n文本"],
    ]
)


@HYPOTHESIS
@given(
    flips=st.lists(
        st.tuples(st.integers(0, len(_WORKBOOK) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.none() | st.integers(0, len(_WORKBOOK)),
)
def test_damaged_workbooks_raise_nothing_but_import_file_error(
    flips: list[tuple[int, int]], cut: int | None
) -> None:
    damaged = bytearray(_WORKBOOK)
    for position, byte in flips:
        damaged[position] = byte
    _only_import_errors(bytes(damaged[:cut]), "x.xlsx")


@HYPOTHESIS
@given(st.data())
def test_damaged_sheet_xml_raises_nothing_but_import_file_error(data: st.DataObject) -> None:
    xml = zipfile.ZipFile(io.BytesIO(_WORKBOOK)).read("xl/worksheets/sheet1.xml").decode()
    start = data.draw(st.integers(0, len(xml)))
    end = data.draw(st.integers(start, min(len(xml), start + 40)))
    insert = data.draw(st.text(st.sampled_from(list('<>/="rcvtis AZ19\u4e2d')), max_size=20))
    broken = xml[:start] + insert + xml[end:]
    _only_import_errors(edit_sheet(_WORKBOOK, lambda _: broken), "x.xlsx")


# A row for the row-number property: (name, phone, email, level, note) or None for a blank row.
# Every value carries the row's index, so a value can only be found in the row it was put in.
def _row(i: int, draw: Any) -> list[Any] | None:
    kind = draw(st.sampled_from(["good", "good", "bad", "blank"]))
    if kind == "blank":
        return draw(st.sampled_from([None, ["", " ", "\u3000", "", ""]]))
    name = draw(st.sampled_from([f"客户{i}", "", f"'客户{i}"]))
    phone = draw(
        st.sampled_from(
            [f"138{i:08d}", f"+86 139 {i:08d}", f"12{i:05d}", "", f"{i}-{i}", "DUP", f"139{i:08d}"]
        )
    )
    email = draw(st.sampled_from([f"u{i}@example.com", f"u{i}@@x", "", f"U{i}@Example.COM "]))
    level = draw(st.sampled_from(["A", "vip", "", f"Z{i}"]))
    note = draw(NOTE_TEXT)
    if kind == "good":
        name, level = f"客户{i}", "A"
        phone, email = f"138{i:08d}", f"u{i}@example.com"
    return [name, phone, email, level, note]


@HYPOTHESIS
@given(st.data(), st.sampled_from(["csv", "xlsx"]), st.integers(0, 2))
def test_error_rows_point_at_the_row_holding_the_value(
    data: st.DataObject, fmt: str, leading_blank: int
) -> None:
    count = data.draw(st.integers(1, 25))
    rows = [_row(i, data.draw) for i in range(count)]
    # "DUP" repeats the phone of the first row that has one.
    first_phone = next((r[1] for r in rows if r and r[1] not in ("", "DUP")), "13800000000")
    for r in rows:
        if r and r[1] == "DUP":
            r[1] = first_phone
    sheet: list[list[Any]] = [[] for _ in range(leading_blank)]
    sheet.append(HEADER)
    sheet.extend(r if r is not None else [] for r in rows)
    if fmt == "xlsx":
        t = read_table(xlsx(sheet), "x.xlsx")
    else:
        text_rows = [[("" if c is None else str(c)) for c in r] for r in sheet]
        t = read_table(csv_bytes(text_rows), "x.csv")
    assert t.header_row == leading_blank + 1
    columns = map_columns(t)
    good, errors = validate_rows(t, columns, levels=LEVELS)

    # Excel row number → the row as written (None: blank, skipped by the reader).
    written = {
        leading_blank + 2 + i: (None if r is None or all(not cell_text(c) for c in r) else r)
        for i, r in enumerate(rows)
    }
    col = {h: i for i, h in enumerate(HEADER)}
    for error in errors:
        row = written[error["row"]]
        assert row is not None, error
        assert cell_text(row[col[error["column"]]]) == error["value"], (error, row)
        first = re.search(r"与第 (\d+) 行", error["reason"])
        if first:
            earlier = written[int(first.group(1))]
            assert int(first.group(1)) < error["row"] and earlier is not None
            assert cell_text(earlier[col[error["column"]]]) != ""

    # Every row holding a bad value has an error on that row and column.
    flagged = {(e["row"], e["column"]) for e in errors}
    seen: set[tuple[str, str]] = set()
    for number, row in written.items():
        if row is None:
            continue
        name, phone, email, level, _ = row
        expected = []
        if not cell_text(name):
            expected.append("姓名")
        for column, value, normalise in (
            ("手机", phone, normalize_phone),
            ("邮箱", email, lambda v: normalize_email(v).casefold()),
        ):
            if not cell_text(value):
                continue
            try:
                key = (column, normalise(value))
            except ValueError:
                expected.append(column)
                continue
            if key in seen:
                expected.append(column)
            seen.add(key)
        if level.startswith("Z"):
            expected.append("等级")
        for column in expected:
            assert (number, column) in flagged, (number, column, row, errors)
    good_rows = {g.row for g in good}
    assert not good_rows & {e["row"] for e in errors}
    assert good_rows | {e["row"] for e in errors} == {n for n, r in written.items() if r}
