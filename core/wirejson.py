"""JSON for the wire and for stored device requests, with money exact.

Decimals are written as their exact number literal (``Decimal("189.90")`` → ``189.90``) and numbers
with a fraction are read back as Decimal, so an amount never passes through float on its way to a
register, a terminal or iiko, nor when a stored request is re-sent after a crash.

Floor: bottom (``core``, shared by every room); imports nothing of ``fiscal``, ``payments``, ``iiko`` or
``nekassir`` (import-linter, pyproject.toml).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def dumps(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite amount: {value!r}")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("money never travels as float; use Decimal")
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}: {dumps(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def plain(value: Any) -> Any:
    """The same data with Decimals as strings, for JSONFields shown to people (not sent anywhere)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
