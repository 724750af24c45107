"""Credentials typed into an address (``http://user:password@host``), cut out before it is shown or used as a key.

Devices and iiko take their login and password from the kiosk's (or the connection's) own fields, which are
never shown back. A password written into the address instead works (httpx sends it as Basic auth), so it is
a likely mistake; left there it would show wherever the address does: admin lists, forms, lock keys, log
lines, «Проверить связь». Plain Python (no Django): the wire clients use it for their messages too.

Floor: bottom (``core``, shared by every room); imports nothing of ``fiscal``, ``payments``, ``iiko`` or
``nekassir`` (import-linter, pyproject.toml).
"""

from __future__ import annotations

import re

# scheme://userinfo@ — the userinfo runs to the last "@" before the path (a password with an unencoded "@"
# in it is still cut whole), and never across "/", "?", "#" or blanks (an "@" in a path or query is not it).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def without_credentials(text: str, mark: str = "") -> str:
    """``text`` (an address, or a lock key, message or log line with addresses in it) without any login or
    password in its addresses: removed (``mark=""``: the address that reaches the same device), or replaced
    by ``mark`` (e.g. ``"***"``: a person sees that something was there)."""
    if not text or "@" not in text:
        return text
    return _USERINFO.sub(lambda m: m["scheme"] + (f"{mark}@" if mark else ""), text)


def has_credentials(text: str) -> bool:
    return bool(text) and without_credentials(text) != text
