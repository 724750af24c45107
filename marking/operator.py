"""The emulated marking operator (Честный ЗНАК's code table) that the emulators answer from.

One ``OperatorRegistry`` is the world's truth about codes for every emulator of a run: the check-service
emulator (``marking/emulator.py``) answers from it, and the ATOL emulator's register-side validation asks it
too (it receives the registry as ``marking_operator=``; the fiscal room never imports this module, it types
the object by a Protocol of its own). A sold code is marked sold here by the ATOL emulator when a sell receipt
closes, and valid again when a return closes, so both emulators agree like the real services do.

A well-formed code never seen before is ``valid`` (old tests and ad-hoc codes keep working), except codes
whose GTIN starts with ``0999``, which are ``not_found`` (a deterministic test hook); a malformed one is
``not_found``. State lives in a JSON file (``JsonStateFile``) so it survives a restart; thread-safe.

Plain Python, no Django.

Floor: middle, the marking room (``marking``); imports only the bottom (``core``) (import-linter,
pyproject.toml).
"""

from __future__ import annotations

import secrets
import string
import threading

from core.emulator_http import JsonStateFile
from core.gs1 import GS, InvalidMarkingCode, make_code, parse_code

STATUSES = ("valid", "sold", "expired", "blocked", "not_found", "sale_stopped")
NOT_FOUND_GTIN_PREFIX = "0999"
_SERIAL_ALPHABET = string.ascii_letters + string.digits
_TAIL_ALPHABET = string.ascii_letters + string.digits + "+/="


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class OperatorRegistry:
    """The code table: ``{raw code: status}`` for every code whose status was set or minted."""

    def __init__(self, state_path: str | None = None):
        self._state = JsonStateFile(state_path)
        self._lock = threading.Lock()
        loaded = self._state.load() or {}
        self._codes: dict[str, str] = {
            str(raw): str(status) for raw, status in (loaded.get("codes") or {}).items() if status in STATUSES
        }

    # --- the three methods the ATOL emulator uses ---------------------------------------------------
    def code_status(self, raw: str) -> str:
        """One of ``STATUSES``."""
        with self._lock:
            known = self._codes.get(raw)
        if known is not None:
            return known
        try:
            code = parse_code(raw)
        except InvalidMarkingCode:
            return "not_found"
        return "not_found" if code.gtin.startswith(NOT_FOUND_GTIN_PREFIX) else "valid"

    def mark_sold(self, raw: str) -> None:
        self.set_status(raw, "sold")

    def mark_returned(self, raw: str) -> None:
        """A returned unit may be sold again."""
        self.set_status(raw, "valid")

    # --- control -------------------------------------------------------------------------------------
    def set_status(self, raw: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown code status {status!r}; known: {', '.join(STATUSES)}")
        if not isinstance(raw, str) or not raw:
            raise ValueError("code must be a non-empty string")
        with self._lock:
            self._codes[raw] = status
            self._save()

    def mint(self, gtin: str, status: str, count: int) -> list[str]:
        """``count`` fresh codes of ``gtin`` in ``status``, as a real scanner reads them (GS in the tail)."""
        if status not in STATUSES:
            raise ValueError(f"unknown code status {status!r}; known: {', '.join(STATUSES)}")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10_000:
            raise ValueError("count must be an integer from 1 to 10000")
        codes: list[str] = []
        with self._lock:
            while len(codes) < count:
                tail = _random(_TAIL_ALPHABET, 4) + GS + "92" + _random(_TAIL_ALPHABET, 44)
                raw = make_code(gtin, _random(_SERIAL_ALPHABET, 13), tail)  # a bad GTIN: ValueError
                if raw in self._codes:
                    continue
                self._codes[raw] = status
                codes.append(raw)
            self._save()
        return codes

    def known(self) -> dict[str, str]:
        """Every code whose status was set or minted (not the implicit ``valid`` ones)."""
        with self._lock:
            return dict(self._codes)

    def _save(self) -> None:  # under the lock
        self._state.save({"codes": self._codes})
