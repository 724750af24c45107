"""Receipt QR codes drawn on the server as inline SVG (segno: pure Python, nothing fetched by the browser).

The string is the FNS one the printed receipt carries (``FiscalDocument.qr``:
``t=YYYYMMDDTHHMM&s=total&fn=…&i=FD&fp=FPD&n=1`` for a sell, ``n=2`` for a sellReturn), so a
manager can scan it from the screen with the FNS "Проверка чеков" app, exactly as a guest would.

Drawing one took ~7 ms, a sixth of the order page (issue 14's page budget is 50 ms): the drawings are kept,
by their text. A receipt's QR text never changes (a refund or an annulment is a receipt of its own, with its
own text), so a kept drawing is never stale; ``KEPT`` bounds them (~2.5 KB each) per process.
"""

from __future__ import annotations

from functools import lru_cache

import segno
from django.utils.safestring import SafeString, mark_safe

KEPT = 256


def qr_svg(text: str, *, scale: int = 3) -> SafeString:
    if not text:
        return mark_safe("")
    return mark_safe(_drawn(text, scale))  # noqa: S308 - segno's own markup of our own string (digits, letters, &=)


@lru_cache(maxsize=KEPT)
def _drawn(text: str, scale: int) -> str:
    return segno.make(text, error="m", micro=False).svg_inline(scale=scale, dark="#111", light="#fff", border=2)
