"""Marking codes as scanned (core/gs1.py): parsed without losing a byte, refused with a reason when malformed."""

from __future__ import annotations

import base64

import pytest

from core.gs1 import GS, InvalidMarkingCode, MarkingCode, imc_base64, make_code, parse_code, short_code

WATER = "0104600000000013215jcmHzLmkdPML" + GS + "938p9E"


def test_a_scanned_code_gives_its_gtin_and_serial_and_keeps_every_byte():
    code = parse_code(WATER)
    assert code == MarkingCode(raw=WATER, gtin="04600000000013", serial="5jcmHzLmkdPML")
    assert code.raw == WATER


def test_the_crypto_tail_may_itself_hold_gs():
    raw = "0104600000000013" + "21abc123" + GS + "91EE10" + GS + "92" + "x" * 44
    assert parse_code(raw).serial == "abc123"


def test_a_code_without_crypto_part_is_accepted():
    assert parse_code("010460000000001321abc").serial == "abc"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("", "Пустой"),
        ("0204600000000013" + "21abc", "начинаться"),
        ("01046000000000" + "21abc", "начинаться"),
        ("0104600000000013" + "22abc", "начинаться"),
        ("0104600000000013" + "21", "серийного"),
        ("0104600000000013" + "21" + GS + "93abcd", "серийного"),
        ("0104600000000013" + "21" + "s" * 21, "длиннее 20"),
        ("0104600000000013" + "21abc" + GS + "17abcd", "91, 92 или 93"),
        ("0104600000000013" + "21abc" + GS + "93", "91, 92 или 93"),
        ("0104600000000013" + "21abc" + GS + "93" + "x" * 240, "длиннее 255"),
        ("0104600000000013" + "21абв", "недопустимые"),
        ("0104600000000013" + "21abc\n", "недопустимые"),
    ],
)
def test_a_malformed_code_is_refused_with_a_russian_reason(raw, words):
    with pytest.raises(InvalidMarkingCode) as caught:
        parse_code(raw)
    assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_imc_is_base64_of_the_exact_bytes_gs_included():
    encoded = imc_base64(WATER)
    assert base64.b64decode(encoded) == WATER.encode("ascii")
    assert b"\x1d" in base64.b64decode(encoded)


def test_short_code_shows_gtin_and_serial_and_cuts_the_rest():
    assert short_code(WATER) == "04600000000013·5jcmHzLmkdPML…"
    assert short_code("010460000000001321abc") == "04600000000013·abc"
    assert short_code("garbage" + GS + "x") == "garbage␝x"


def test_make_code_builds_what_a_scanner_reads():
    raw = make_code("04600000000013", "abc123", "ab" + GS + "cd")
    assert raw == "0104600000000013" + "21abc123" + GS + "93ab" + GS + "cd"
    assert parse_code(raw).gtin == "04600000000013"
    with pytest.raises(InvalidMarkingCode):
        make_code("4600000000013", "abc", "abcd")
