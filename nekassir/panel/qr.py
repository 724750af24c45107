"""Receipt QR codes drawn on the server as inline SVG (segno: pure Python, nothing fetched by the browser).

The string is the FNS one the printed receipt carries (``FiscalDocument.qr``:
``t=YYYYMMDDTHHMM&s=total&fn=…&i=FD&fp=FPD&n=1`` for a sell, ``n=2`` for a sellReturn), so a
manager can scan it from the screen with the FNS "Проверка чеков" app, exactly as a guest would.
"""

from __future__ import annotations

import segno
from django.utils.safestring import SafeString, mark_safe


def qr_svg(text: str, *, scale: int = 3) -> SafeString:
    if not text:
        return mark_safe("")
    svg = segno.make(text, error="m", micro=False).svg_inline(scale=scale, dark="#111", light="#fff", border=2)
    return mark_safe(svg)  # noqa: S308 - segno's own markup of our own string (digits, letters, &=)
