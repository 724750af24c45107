"""Numbers in the panel's query strings and forms: one reader, so none of them can reach a 500.

``str.isdigit()`` is not a check for ``int()``: it accepts "²" and other digits ``int()`` refuses, and a
number past 64 bits passes both and then overflows the database. So a number here is ASCII digits only,
within the range of a database id; anything else answers 400 (``BadRequest``, Django's 400 page).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import BadRequest

BIGGEST_ID = 2**63 - 1  # a BigAutoField, and the largest integer SQLite stores


class BadNumber(BadRequest):
    """A numeric parameter that is not one: the request is refused as a whole (400)."""

    def __init__(self, name: str, raw: str):
        super().__init__(f"Параметр {name}: ожидается целое число, получено {raw[:40]!r}")
        self.name = name


def parse_number(raw: str, name: str, *, minimum: int = 0, maximum: int = BIGGEST_ID) -> int:
    """``raw`` as an int in ``[minimum, maximum]``, or BadNumber. No sign, blanks, dots or exponents."""
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw.lstrip("0")) > len(str(maximum)):
        raise BadNumber(name, raw)  # the length test also keeps int() away from strings of 4300+ digits
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadNumber(name, raw)
    return value


def optional_id(params: Mapping[str, str], name: str) -> int | None:
    """``?name=<id>`` from ``request.GET`` / ``request.POST``: None when absent or empty, else a valid id."""
    raw = params.get(name, "")
    return None if raw == "" else parse_number(raw, name)


def page_number(params: Mapping[str, str], name: str) -> int:
    """``?name=<n>`` of a paged list (Django's ``Paginator.get_page``): 1 when absent or empty."""
    return optional_id(params, name) or 1
