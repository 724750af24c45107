"""Money as a person reads it, the one way the whole product writes it: «1 234,50 ₽» (the active language's
separators: a non-breaking space between thousands and a decimal comma in Russian).

Pages use it through the panel's ``rub`` filter; texts built in Python (alerts, reconciliation notes, form
errors, job messages) call ``rub`` here. ``money_text`` rewrites the amounts that a stored text (the journal's
messages, written as Python prints a Decimal: «709.00 ₽») carries, whenever it was written.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.utils.formats import number_format

CENT = Decimal("0.01")


def rub(value: Any) -> str:
    """1234.5 → «1 234,50 ₽» (money is Decimal end to end; a number or a numeric text is read exactly)."""
    if value in (None, ""):
        return "—"
    amount = Decimal(str(value)).quantize(CENT)
    return f"{number_format(amount, 2, use_l10n=True, force_grouping=True)} ₽"


# An amount written into a stored text as Python prints a Decimal: «709.00 ₽», «1234.5 ₽», or «709.00 руб.»
# (the terminal's journal line). Not preceded by a digit, a point or a comma: «1 709,00 ₽» is left alone.
STORED_AMOUNT = re.compile(r"(?<![\d.,])(-?\d+(?:\.\d+)?) (?:₽|руб\.)")


def money_text(value: Any) -> Any:
    """«K1-001: возврат 709.00 ₽» → «K1-001: возврат 709,00 ₽»; an empty value is returned as it is."""
    if not value:
        return value
    return STORED_AMOUNT.sub(lambda found: rub(found.group(1)), str(value))
