"""Marking codes (Честный ЗНАК) as a 2D scanner reads them: GS1 DataMatrix strings, kept byte for byte.

A unit's code is ``01`` + GTIN (14 digits) + ``21`` + serial, then, after a GS (ASCII 29), the crypto part
(``91``/``92``/``93`` + verification key or crypto tail, which may itself contain GS). The register and the
marking operator validate the exact bytes: a code that lost its GS or its tail fails, so the code is never
normalised here, only checked and shown (PROTOCOLS.md §4). The GTIN's check digit is not verified: the
marking operator does that, and the emulators' test codes need not carry one.

Plain Python, no Django.

Floor: bottom (``core``, shared by every room); imports nothing of ``fiscal``, ``payments``, ``iiko``,
``marking`` or ``nekassir`` (import-linter, pyproject.toml).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

GS = "\x1d"
MAX_LENGTH = 255
MAX_SERIAL = 20
CRYPTO_AIS = ("91", "92", "93")

_PRINTABLE = re.compile(r"[\x20-\x7e\x1d]*")
_HEAD = re.compile(r"01(?P<gtin>\d{14})21")


class InvalidMarkingCode(ValueError):
    """The string is not a marking code as a scanner reads it; the message is Russian, for people."""


@dataclass(frozen=True)
class MarkingCode:
    raw: str  # exactly what the scanner read, GS and tail included
    gtin: str
    serial: str


def parse_code(raw: str) -> MarkingCode:
    """The code's GTIN and serial, or ``InvalidMarkingCode`` saying what is wrong with it."""
    if not isinstance(raw, str) or not raw:
        raise InvalidMarkingCode("Пустой код маркировки")
    if len(raw) > MAX_LENGTH:
        raise InvalidMarkingCode(f"Код маркировки длиннее {MAX_LENGTH} символов")
    if not _PRINTABLE.fullmatch(raw):
        raise InvalidMarkingCode("В коде маркировки недопустимые символы (только латиница, цифры, знаки и GS)")
    head = _HEAD.match(raw)
    if head is None:
        raise InvalidMarkingCode("Код маркировки должен начинаться с 01 + 14 цифр GTIN + 21")
    rest = raw[head.end():]
    serial, separator, tail = rest.partition(GS)
    if not serial:
        raise InvalidMarkingCode("В коде маркировки нет серийного номера")
    if len(serial) > MAX_SERIAL:
        raise InvalidMarkingCode(f"Серийный номер кода маркировки длиннее {MAX_SERIAL} символов")
    if separator and (tail[:2] not in CRYPTO_AIS or len(tail) < 3):
        raise InvalidMarkingCode("После разделителя GS в коде маркировки должен идти 91, 92 или 93 и криптохвост")
    return MarkingCode(raw=raw, gtin=head["gtin"], serial=serial)


def imc_base64(raw: str) -> str:
    """The code for ATOL's ``imc``: base64 of its exact UTF-8 bytes, GS kept."""
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def short_code(raw: str) -> str:
    """For display: GTIN · serial, the crypto part cut (``04600000000013·abc123…``)."""
    try:
        code = parse_code(raw)
    except InvalidMarkingCode:
        visible = raw.replace(GS, "␝")
        return visible if len(visible) <= 40 else visible[:40] + "…"
    cut = len(raw) > len(code.gtin) + len(code.serial) + 4
    return f"{code.gtin}·{code.serial}" + ("…" if cut else "")


def make_code(gtin: str, serial: str, tail: str) -> str:
    """A code as a scanner reads it, for the emulators and the demo: ``01{gtin}21{serial}<GS>93{tail}``."""
    raw = f"01{gtin}21{serial}{GS}93{tail}"
    parse_code(raw)  # a bad GTIN or serial fails here, not at the register
    return raw
