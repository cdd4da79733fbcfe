"""A batch's converted COPY fields as what the ``COPY`` sends: text lines, or binary tuples where compiled.

In:  a batch's columns as copy_text.py holds them once converted (the rowids, then each column's COPY text
     fields), the catalog's :class:`~migration_pipeline.catalog.Column` of each, and the rows that failed.
Out: :func:`lines` -> the rows' text COPY lines in the connection's encoding (csrc/lines.c's
     ``copy_lines`` where compiled) and the bytes of the longest; :func:`tuples` -> the same rows as
     binary COPY tuples (csrc/binary.c), which :data:`SIGNATURE` and :data:`TRAILER` open and close, where
     :func:`available` (compiled, on a UTF-8 connection). The value rules stay the text ones (copy_text.py,
     convert.py): the tuples only write what they made in the form the server reads without parsing it
     (1M tweets: the COPY 4.0 s in text, 2.9 s in binary; bench/migrate_bench.py --profile).
Fails: never for a row: a field the compiled writer cannot read (a converter's bug) fails its row, with the
     error, as a converter's would; UnicodeEncodeError from :func:`lines` for a text the encoding lacks.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..catalog import Column
from . import native

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # no flags, no header extension
TRAILER = b"\xff\xff"
_TYPES = {"text": "t", "jsonb": "j", "timestamptz": "T", "boolean": "b", "integer": "i"}


def available(encoding: str) -> bool:
    return native.compiled is not None and encoding == "utf-8"


def types_of(columns: Sequence[Column]) -> str:
    """binary.c's letter for the rowid and for each of ``columns`` (text and varchar alike, int4 and serial)."""
    return "q" + "".join(_TYPES[c.kind] for c in columns)


def tuples(
    columns: list[list], failures: dict[int, tuple], types: str, names: Sequence[str]
) -> tuple[bytes, int]:
    """The binary COPY tuples of the rows of ``columns`` but ``failures``', and the bytes of the longest.
    A row holding a field binary.c cannot read joins ``failures`` (``(column, error, field)``)."""
    write = native.compiled.copy_binary
    try:
        return write(columns, types, set(failures) or None)
    except ValueError:  # UnicodeEncodeError too
        pass
    for i in range(len(columns[0])):
        if i in failures:
            continue
        for c in range(1, len(columns)):
            try:
                write([[0], [columns[c][i]]], "q" + types[c], None)
            except ValueError as err:
                failures[i] = (names[c - 1], err, columns[c][i])
                break
    return write(columns, types, set(failures) or None)


def lines(columns: list[list], failures: dict[int, object], encoding: str) -> tuple[bytes, int]:
    """The COPY lines of the rows of ``columns`` (the rowids first) but ``failures``' (whose failed values
    are None), in ``encoding``, and the bytes of the longest (without its newline)."""
    compiled = native.compiled
    if compiled is not None and encoding == "utf-8":
        return compiled.copy_lines(columns, set(failures) or None)
    columns[0] = list(map(str, columns[0]))
    rows = zip(*columns, strict=True)
    if failures:
        rows = (row for i, row in enumerate(rows) if i not in failures)
    # each line encoded on its own: one text of the whole batch would take 4 bytes a character as soon as
    # a single emoji is in it (measured: 12 MB more at the peak for 5,000 tweets)
    encode = str.encode if encoding == "utf-8" else lambda line: line.encode(encoding)
    encoded = list(map(encode, map("\t".join, rows)))
    return (b"\n".join(encoded) + b"\n", max(map(len, encoded))) if encoded else (b"", 0)
