"""Receipt QR codes (nekassir/panel/qr.py): drawn once per text and kept (issue 14, the order page's budget);
a kept drawing is exactly what segno draws for that text, and another text never gets it."""

from __future__ import annotations

import segno

from nekassir.panel import qr

SELL = "t=20261207T1412&s=709.00&fn=9999078900000001&i={}&fp=2881722091&n=1"


def drawn_afresh(text: str) -> str:
    return segno.make(text, error="m", micro=False).svg_inline(scale=3, dark="#111", light="#fff", border=2)


def test_a_kept_drawing_is_the_one_for_its_text():
    texts = [SELL.format(fd) for fd in range(1, 40)]
    first = [qr.qr_svg(text) for text in texts]
    again = [qr.qr_svg(text) for text in reversed(texts)][::-1]
    assert first == again == [drawn_afresh(text) for text in texts]
    assert len(set(first)) == len(texts)


def test_drawings_are_kept_within_a_bound():
    qr._drawn.cache_clear()
    for fd in range(qr.KEPT + 50):
        qr.qr_svg(SELL.format(fd))
    info = qr._drawn.cache_info()
    assert info.currsize == qr.KEPT and info.misses == qr.KEPT + 50
    qr.qr_svg(SELL.format(qr.KEPT + 49))
    assert qr._drawn.cache_info().hits == 1
    assert len(qr.qr_svg(SELL.format(1))) < 4_000  # ~KEPT × this per process


def test_no_text_draws_nothing():
    assert qr.qr_svg("") == ""
