"""Which VAT rates a kiosk's NEW sale may carry: by the kiosk's taxation system and the day of the sale.

PROTOCOLS.md §1 ("VAT and the taxation system", Tax Code from 2026-01-01). Not every driver refuses a wrong
pair (the tax service flags it later), so the kiosk API refuses it before anything is saved. Only new sales
are checked: a sellReturn or an annulment mirrors its sale's rates, whatever they were.

Fiscal law, so it lives in the register's room: the kiosk API (top floor) and the correction receipts
(``fiscal.corrections``) both ask it, without fiscal climbing up to the top floor for it.

* general rates: 22 %, 10 %, 0 % (20 % until 2025-12-31, 22 % from 2026-01-01), and "no VAT";
* ``osn``: the general rates and "no VAT";
* the simplified systems (``usnIncome``, ``usnIncomeOutcome``): also the special 5 % and 7 %;
* ``patent`` and ``esn`` follow the seller's own VAT status (a payer at the general rates, or exempt):
  the general rates and "no VAT", never the special ones, which belong to the simplified systems;
* calculated rates (``vat105``, ``vat107``, ``vat110``, ``vat120``, ``vat122``) belong to prepayment and
  advance receipts, never to a kiosk's full-payment sale.
"""

from __future__ import annotations

from datetime import date

from django.db import models

from core.models import TaxationType


class Vat(models.TextChoices):
    """ATOL ``tax.type`` codes (PROTOCOLS.md §1)."""

    NONE = "none", "без НДС"
    VAT0 = "vat0", "НДС 0%"
    VAT5 = "vat5", "НДС 5%"
    VAT7 = "vat7", "НДС 7%"
    VAT10 = "vat10", "НДС 10%"
    VAT20 = "vat20", "НДС 20%"
    VAT22 = "vat22", "НДС 22%"
    VAT105 = "vat105", "НДС 5/105"
    VAT107 = "vat107", "НДС 7/107"
    VAT110 = "vat110", "НДС 10/110"
    VAT120 = "vat120", "НДС 20/120"
    VAT122 = "vat122", "НДС 22/122"



RATE_22_FROM = date(2026, 1, 1)  # 20 % ended on 2025-12-31
SIMPLIFIED = frozenset({TaxationType.USN_INCOME, TaxationType.USN_INCOME_OUTCOME})
SPECIAL = frozenset({Vat.VAT5, Vat.VAT7})
CALCULATED = frozenset({Vat.VAT105, Vat.VAT107, Vat.VAT110, Vat.VAT120, Vat.VAT122})


def general_rates(on: date) -> frozenset[str]:
    first = Vat.VAT22 if on >= RATE_22_FROM else Vat.VAT20
    return frozenset({first, Vat.VAT10, Vat.VAT0})


def allowed_rates(taxation_type: str, on: date) -> frozenset[str]:
    rates = {Vat.NONE, *general_rates(on)}
    if taxation_type in SIMPLIFIED:
        rates |= SPECIAL
    return frozenset(rates)


def refusal(vat: str, taxation_type: str, on: date) -> str | None:
    """Why ``vat`` cannot be in a full-payment sale of a kiosk under ``taxation_type`` on ``on`` (Russian,
    for the kiosk's developers and the venue), or None when it can."""
    if vat in allowed_rates(taxation_type, on):
        return None
    label = Vat(vat).label if vat in Vat.values else vat
    if vat in CALCULATED:
        return f"расчётная ставка «{label}» бывает только в чеках предоплаты и аванса, не в продаже с полной оплатой"
    if vat in SPECIAL:
        system = TaxationType(taxation_type).label if taxation_type in TaxationType.values else taxation_type
        return f"ставка «{label}» применяется только при УСН, а у киоска {system}"
    if vat == Vat.VAT20:
        return f"ставка «{label}» не применяется с {RATE_22_FROM:%d.%m.%Y}: общая ставка теперь 22% (vat22)"
    return f"ставка «{label}» применяется только с {RATE_22_FROM:%d.%m.%Y}"
