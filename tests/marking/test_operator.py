"""The emulated marking operator (marking/operator.py): the code table both emulators answer from, kept on disk."""

from __future__ import annotations

import json

import pytest

from core.gs1 import GS, make_code, parse_code
from marking.operator import STATUSES, OperatorRegistry

GTIN = "04600000000013"


def test_a_well_formed_code_never_seen_is_valid_and_the_0999_gtins_are_not_found():
    registry = OperatorRegistry()
    assert registry.code_status(make_code(GTIN, "abc123", "ab" + GS + "cd")) == "valid"
    assert registry.code_status(make_code("09990000000012", "abc123", "abcd")) == "not_found"
    assert registry.code_status("not a code") == "not_found"


def test_sold_then_returned_is_valid_again():
    registry = OperatorRegistry()
    raw = make_code(GTIN, "abc123", "abcd")
    registry.mark_sold(raw)
    assert registry.code_status(raw) == "sold"
    registry.mark_returned(raw)
    assert registry.code_status(raw) == "valid"


@pytest.mark.parametrize("status", STATUSES)
def test_minted_codes_are_fresh_well_formed_with_gs_in_the_tail_and_in_their_state(status):
    registry = OperatorRegistry()
    codes = registry.mint(GTIN, status, 5)
    assert len(set(codes)) == 5
    for raw in codes:
        assert parse_code(raw).gtin == GTIN
        assert raw.count(GS) >= 2  # the separator before 93, and one inside the crypto tail
        assert registry.code_status(raw) == status


def test_bad_statuses_gtins_and_counts_are_refused():
    registry = OperatorRegistry()
    with pytest.raises(ValueError, match="unknown code status"):
        registry.set_status(make_code(GTIN, "abc", "abcd"), "lost")
    with pytest.raises(ValueError, match="unknown code status"):
        registry.mint(GTIN, "lost", 1)
    with pytest.raises(ValueError):
        registry.mint("123", "valid", 1)
    with pytest.raises(ValueError, match="count"):
        registry.mint(GTIN, "valid", 0)


def test_the_table_survives_a_restart(tmp_path):
    path = str(tmp_path / "marking.json")
    first = OperatorRegistry(state_path=path)
    sold = first.mint(GTIN, "sold", 2)
    blocked = make_code(GTIN, "blocked1", "ab" + GS + "cd")
    first.set_status(blocked, "blocked")
    with open(path, encoding="utf-8") as fh:
        assert json.load(fh)["codes"][blocked] == "blocked"  # GS kept in the file
    second = OperatorRegistry(state_path=path)
    assert [second.code_status(raw) for raw in sold] == ["sold", "sold"]
    assert second.code_status(blocked) == "blocked"
    assert second.known() == first.known()
