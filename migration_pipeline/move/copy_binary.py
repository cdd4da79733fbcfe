"""A batch's COPY text fields as the tuples of a binary ``COPY``, where the compiled fast paths built.

In:  a batch's columns as copy_text.py holds them once converted (the rowids, then each column's COPY text
     fields), the catalog's :class:`~migration_pipeline.catalog.Column` of each, and the rows that failed.
Out: :func:`tuples` -> the rows' binary COPY tuples (csrc/binary.c) and the bytes of the longest;
     :data:`SIGNATURE` and :data:`TRAILER` open and close the COPY. The value rules stay the text ones
     (copy_text.py, convert.py): this only writes what they made in the form the server reads without
     parsing it (1M tweets: the COPY 4.0 s in text, 2.9 s in binary; bench/migrate_bench.py --profile).
     :func:`available` says whether it can run: compiled, on a UTF-8 connection; elsewhere the COPY stays text.
Fails: never for a row: a field the compiled writer cannot read (a converter's bug) fails its row, with the
     error, as a converter's would.
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
