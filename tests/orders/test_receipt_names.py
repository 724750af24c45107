"""Receipt names fit FFD 1.2 tag 1030: ≤128 characters the register's code page holds, never empty."""

from __future__ import annotations

import pytest

from fiscal.atol_emulator import validate_receipt
from iiko.emulator import DEMO_MODIFIERS, DEMO_PRODUCTS, PRODUCT_CAESAR_ID, PRODUCT_ICE_CREAM_ID
from nekassir.receipt_names import FALLBACK, MAX_LENGTH, receipt_name


def demo_name(product_id: str) -> str:
    return next(p["name"] for p in DEMO_PRODUCTS if p["id"] == product_id)


def fits_code_page(text: str) -> bool:
    try:
        text.encode("cp866")
    except UnicodeEncodeError:
        return False
    return text.isprintable()


def test_a_plain_name_is_kept_as_it_is():
    assert receipt_name("Капучино 0,3 л") == "Капучино 0,3 л"
    assert receipt_name("Вода питьевая негазированная 0,5 л") == "Вода питьевая негазированная 0,5 л"


def test_the_demo_menus_long_caesar_is_cut_at_a_word_with_an_ellipsis():
    name = demo_name(PRODUCT_CAESAR_ID)
    assert len(name) > MAX_LENGTH
    result = receipt_name(name)
    assert len(result) <= MAX_LENGTH
    assert result.endswith("...")
    assert result.startswith('Салат "Цезарь" с куриным филе гриль')
    kept = result.removesuffix("...")
    assert name.replace("«", '"').replace("»", '"').startswith(kept)
    # the cut falls between words, not inside one
    assert name.replace("«", '"').replace("»", '"')[len(kept)] in " ,"


def test_the_emoji_is_dropped_from_the_ice_cream():
    assert receipt_name(demo_name(PRODUCT_ICE_CREAM_ID)) == "Мороженое пломбир"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Бургер «Классический»", 'Бургер "Классический"'),
        ("Чай — чёрный… с лимоном", "Чай - чёрный... с лимоном"),
        ("Crème brûlée", "Creme brulee"),
        ("Ｌａｔｔｅ ½", "Latte 1/2"),
        ("Суп\tдня\n(порция)", "Суп дня (порция)"),
        ("  много   пробелов  ", "много пробелов"),
        ("Пицца 🍕🍕 «Маргарита» 30 см", 'Пицца "Маргарита" 30 см'),
        ("Ёлочка № 5, 90°", "Ёлочка № 5, 90°"),
        ("Сок\u200bяблочный\ufe0f", "Сок яблочный"),
        ("е\u0308ж", "ёж"),  # combining diaeresis composed (NFC)
    ],
)
def test_characters_are_made_printable(name, expected):
    assert receipt_name(name) == expected


@pytest.mark.parametrize("name", ["", "   ", "🍦🍕", "\x00\x01", "…", "中文"])
def test_a_name_with_nothing_printable_becomes_the_fallback(name):
    assert receipt_name(name) == FALLBACK


def test_a_single_endless_word_is_cut_hard():
    result = receipt_name("А" * 500)
    assert result == "А" * (MAX_LENGTH - 3) + "..."


def test_exactly_128_characters_are_not_cut():
    name = "Б" * MAX_LENGTH
    assert receipt_name(name) == name


def test_every_demo_name_fits_the_code_page_and_the_atol_emulator_accepts_it():
    names = [p["name"] for p in DEMO_PRODUCTS] + [m["name"] for m in DEMO_MODIFIERS] + ["🍦", "x" * 2000]
    items = []
    for name in names:
        result = receipt_name(name)
        assert 0 < len(result) <= MAX_LENGTH
        assert fits_code_page(result), result
        items.append({"type": "position", "name": result, "price": 1.0, "quantity": 1, "amount": 1.0,
                      "tax": {"type": "vat22"}})
    total = float(len(items))
    task = {"type": "sell", "items": items, "payments": [{"type": "electronically", "sum": total}], "total": total}
    assert validate_receipt(task).total == len(items)
