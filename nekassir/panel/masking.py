"""Guests' contacts as the panel shows them to who may not refund: enough to recognise, not to reuse.

A guest's phone and e-mail are personal data; reading orders is a cashier's need, contacting the guest (about a
refund) is the refund holder's. So the panel masks them (``+7 *** ***-**-67``, ``g***@example.com``) for
everyone else, on the page and inside the raw iiko requests and answers it shows.
"""

from __future__ import annotations

import re
from typing import Any

# Keys of a wire document (iiko, ATOL) that carry a guest's phone or e-mail, compared lower-cased.
CONTACT_KEYS = frozenset({"phone", "email", "emailorphone", "customerphone"})


def mask_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 11 and digits[0] in "78":
        return f"+7 *** ***-**-{digits[-2:]}"
    return f"***{digits[-2:]}" if len(digits) > 4 else "***"


def mask_email(email: str) -> str:
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def mask_contact(value: str) -> str:
    """A phone or an e-mail (``email_or_phone`` may be either), masked; empty stays empty."""
    if not value:
        return ""
    return mask_email(value) if "@" in value else mask_phone(value)


def mask_document(value: Any) -> Any:
    """A copy of a JSON document with every contact field masked, wherever it is nested."""
    if isinstance(value, dict):
        return {key: mask_contact(str(item)) if str(key).lower() in CONTACT_KEYS and isinstance(item, str | int)
                else mask_document(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_document(item) for item in value]
    return value
