"""``{% load panel %}``: URLs for the current viewer (manager or kiosk embed), money, durations."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

from django import template
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from core.gs1 import GS, short_code
from core.money import money_text, rub
from nekassir.iiko_messages import explain, is_raw
from nekassir.panel.access import READ, REFUND
from nekassir.panel.masking import mask_contact, mask_document
from nekassir.panel.qr import qr_svg

register = template.Library()


@register.simple_tag(takes_context=True)
def purl(context, name: str, *args) -> str:
    """``{% purl "order" order.pk %}``: the page for this viewer (the embed has its own URLs)."""
    return context["scope"].url(name, *args)


@register.simple_tag(takes_context=True)
def page_url(context, param: str, number, anchor: str = "") -> str:
    """``{% page_url "page" 3 "orders" %}``: this page's URL with ``?page=3`` and its other parameters kept
    (but ``job``: a finished job is shown once), then ``#orders``."""
    query = context["request"].GET.copy()
    query.pop("job", None)
    query[param] = str(number)
    return f"?{query.urlencode()}" + (f"#{anchor}" if anchor else "")


@register.simple_tag(takes_context=True)
def order_rows(context, orders, with_issues=False):
    """``{% order_rows orders with_issues %}``: the orders table's rows (nekassir.panel.rows)."""
    from nekassir.panel.rows import order_rows_html

    return order_rows_html(orders, context["scope"], bool(with_issues))


@register.simple_tag(takes_context=True)
def receipt_rows(context, receipts):
    """``{% receipt_rows receipts %}``: the shift page's receipts table rows (nekassir.panel.rows)."""
    from nekassir.panel.rows import receipt_rows_html

    return receipt_rows_html(receipts, context["scope"])


# Money, the one way the product writes it (core.money): ``{{ order.total|rub }}`` → «1 234,50 ₽»; a stored
# text's amounts («K1-001: возврат 709.00 ₽») shown the same way: ``{{ event.message|money_text }}``.
register.filter("rub", rub)
register.filter("money_text", money_text)


@register.filter
def qty(value) -> str:
    """1.000 → «1», 0.350 → «0,35»."""
    if value in (None, ""):
        return ""
    amount = Decimal(str(value)).normalize()
    text = f"{amount:f}"
    return text.replace(".", ",")


@register.filter
def duration(value) -> str:
    """A timedelta as «5 ч 12 мин» / «12 мин»; negative as «истекло»."""
    if not isinstance(value, timedelta):
        return ""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "срок вышел"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} ч {minutes:02d} мин" if hours else f"{max(minutes, 1)} мин"


@register.filter
def mark_short(code: str) -> str:
    """A marking code for a list: GTIN · serial, the crypto part cut."""
    return short_code(code or "")


GS_MARK = '<span class="gs" title="разделитель GS (ASCII 29)">GS</span>'


@register.filter
def mark_full(code: str) -> str:
    """A marking code exactly as scanned, each GS separator (it prints nothing) shown as a marked «GS»."""
    return mark_safe(GS_MARK.join(escape(part) for part in (code or "").split(GS)))  # noqa: S308 - parts escaped


@register.filter
def iiko_error(raw: str):
    """An iiko error text as the manager reads it: Russian (``nekassir.iiko_messages``), iiko's own words kept
    folded under «Для поддержки»."""
    if not raw:
        return ""
    russian = format_html('<span data-testid="iiko-error">{}</span>', explain(raw))
    if not is_raw(raw):
        return russian
    return format_html('{} <details class="iiko-raw"><summary class="small muted">{}</summary><code class="raw">{}'
                       "</code></details>", russian, "Для поддержки: ответ iiko", raw)


@register.filter
def qr(text: str):
    return qr_svg(text)


@register.filter
def pretty_json(value) -> str:
    """A raw request or answer as indented JSON, Cyrillic kept readable (autoescaped by the template)."""
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


@register.filter
def guest_contact(value, scope) -> str:
    """``{{ order.phone|guest_contact:scope }}``: in full for who may refund, else masked (+7 *** ***-**-67)."""
    return value if scope.can(REFUND) else mask_contact(value or "")


@register.filter
def guest_masked(document, scope):
    """``{{ attempt.request|guest_masked:scope|pretty_json }}``: a wire document with the guest's phone and
    e-mail masked unless the viewer may refund."""
    return document if scope.can(REFUND) else mask_document(document)


EMBED_PATH = re.compile(r"^/kiosk/(?P<code>[A-Za-z0-9_-]+)/service/")


def embed_back(request) -> dict[str, object] | None:
    """The kiosk embed's way back to its service menu, for a request of the embed (by its URL name, or by its
    path when no URL matched: a 404); None for a manager's page. No database."""
    match = getattr(request, "resolver_match", None)
    if match is not None and (match.url_name or "").startswith("embed_") and "code" in match.kwargs:
        return {"embed": True, "url": reverse("panel:embed_home", args=[match.kwargs["code"]])}
    found = EMBED_PATH.match(getattr(request, "path", "") or "")
    if found:
        return {"embed": True, "url": reverse("panel:embed_home", args=[found["code"]])}
    return None


@register.simple_tag(takes_context=True)
def way_back(context) -> dict[str, object]:
    """Where an error page sends the viewer: a kiosk's embed back to its service menu, a manager who may read
    to the venue page, an account without the reading right nowhere (it may only log out). A view may have put
    ``back`` in the context already (the 500 page, drawn without the database)."""
    if context.get("back"):
        return context["back"]
    request = context.get("request")
    embed = embed_back(request)
    if embed is not None:
        return embed
    user = getattr(request, "user", None)
    return {"embed": False, "url": reverse("panel:home") if user is not None and user.has_perm(READ) else ""}
