"""JSON beyond RFC 8259: what a JSON text must also be to land in jsonb exactly and be verified there.

In:  JSON text (a ``str``) from a source column.
Out: :func:`too_deep` and :func:`number_problem` (a reason, or None) for the limits below;
     :func:`parse_exact`, the parse every Python-side comparison uses (numbers as exact decimals).
Fails: :func:`parse_exact` raises ``ValueError`` for text that is not strict JSON; the others never fail.

The limits, measured against PostgreSQL 18:

- nesting: at most :data:`MAX_DEPTH` levels of arrays/objects. PostgreSQL's jsonb takes ~14,500 levels
  with its default 2MB ``max_stack_depth``, but the values must also be read back and compared: orjson
  stops at 1,024 levels and Python's ``json`` (psycopg's jsonb loader, the checks) recurses once per level
  under a recursion limit of 1,000 shared with its caller's frames. 512 leaves room for both.
- numbers: jsonb keeps every number as ``numeric``, which holds at most 131,072 digits before the point
  and 16,383 after it, with an exponent of at most 1,073,741,823 either way (else "value overflows
  numeric format"). 1e400 is stored exactly; 1e131072 or 1e-16384 cannot be. Numbers orjson reads are
  finite doubles, which numeric holds but for oddities such as 0e-16384: checking every document for
  those would cost every load, so PostgreSQL refuses those rows itself and the load quarantines them
  (load.stage_rows); the numbers of documents orjson cannot read are checked here.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

MAX_DEPTH = 512
NUMERIC_MAX_INTEGER_DIGITS = 131_072
NUMERIC_MAX_SCALE = 16_383
NUMERIC_MAX_EXPONENT = 1_073_741_823

_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_STRING_OR_NUMBER = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|-?[0-9][0-9.]*(?:[eE]([+-]?[0-9]+))?', re.DOTALL)


def too_deep(text: str) -> int | None:
    """How deeply arrays and objects nest in ``text`` when deeper than :data:`MAX_DEPTH`, else None
    (brackets inside strings do not count). Ordinary documents have too few brackets to be scanned."""
    if len(text) <= 2 * MAX_DEPTH or text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest if deepest > MAX_DEPTH else None


def number_problem(text: str) -> str | None:
    """Why a number of the (valid) JSON ``text`` cannot be stored exactly as jsonb, or None."""
    for match in _STRING_OR_NUMBER.finditer(text):
        token = match.group()
        if token[0] == '"':
            continue
        exponent = match.group(1)
        if exponent is not None and len(exponent.lstrip("+-").lstrip("0")) > 10:
            return f"JSON number {_short(token)} has an exponent beyond PostgreSQL's numeric range"
        if exponent is not None and abs(int(exponent)) > NUMERIC_MAX_EXPONENT:
            return f"JSON number {_short(token)} has an exponent beyond PostgreSQL's numeric range"
        number = Decimal(token)
        if number and number.adjusted() >= NUMERIC_MAX_INTEGER_DIGITS:
            return (
                f"JSON number {_short(token)} has more than the {NUMERIC_MAX_INTEGER_DIGITS} digits before "
                "the decimal point PostgreSQL's numeric holds"
            )
        if -number.as_tuple().exponent > NUMERIC_MAX_SCALE:
            return (
                f"JSON number {_short(token)} has more than the {NUMERIC_MAX_SCALE} digits after the "
                "decimal point PostgreSQL's numeric holds"
            )
    return None


def _short(token: str) -> str:
    return token if len(token) <= 24 else f"{token[:12]}...{token[-8:]} ({len(token)} characters)"


def _refuse_constant(token: str) -> object:
    raise ValueError(f"{token} is not valid JSON")


def _decimal(token: str) -> Decimal:
    try:
        return Decimal(token)
    except ArithmeticError:  # an exponent beyond even Decimal's range: number_problem names it
        return Decimal("Infinity")


def parse_exact(text: str) -> object:
    """Strict JSON with every number as an exact ``Decimal`` (so 1e400 equals the 401 digits jsonb
    writes for it, and integers of any length parse). For texts within :data:`MAX_DEPTH`."""
    return json.loads(text, parse_float=_decimal, parse_int=Decimal, parse_constant=_refuse_constant)


def walk_strings(value: object):
    """Every string of a parsed JSON value, object keys included, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
