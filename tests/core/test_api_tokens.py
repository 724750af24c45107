"""Kiosk API tokens: stored hashed, shown once, revocable, never in a repr."""

from __future__ import annotations

import hashlib

import pytest

from core.models import Kiosk, KioskToken, authenticate_token, issue_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def kiosk() -> Kiosk:
    return Kiosk.objects.create(code="K1", name="Киоск 1", has_register=False)


def test_only_the_hash_and_a_short_prefix_are_stored(kiosk):
    token = issue_token(kiosk)
    row = KioskToken.objects.get()
    assert token.startswith("nkk_") and len(token) > 40
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(row.prefix) and len(row.prefix) <= 12
    stored = [str(value) for value in KioskToken.objects.values_list(flat=False).get()]
    assert token not in stored
    assert token not in str(row) and token not in repr(row)


def test_a_token_authenticates_its_kiosk(kiosk):
    token = issue_token(kiosk)
    assert authenticate_token(token) == kiosk
    assert KioskToken.authenticate(token) == kiosk


@pytest.mark.parametrize("token", ["", "nkk_", "nkk_wrong", "ключ", "x" * 5000])
def test_anything_else_does_not(kiosk, token):
    issue_token(kiosk)
    assert authenticate_token(token) is None


def test_tokens_are_distinct_and_revocable_one_by_one(kiosk):
    first, second = issue_token(kiosk), issue_token(kiosk)
    assert first != second
    KioskToken.objects.get(prefix=first[:10]).revoke()
    assert authenticate_token(first) is None
    assert authenticate_token(second) == kiosk


def test_an_inactive_kiosks_tokens_stop_working(kiosk):
    token = issue_token(kiosk)
    kiosk.active = False
    kiosk.save()
    assert authenticate_token(token) is None
