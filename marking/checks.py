"""The permissive-mode check of an order's codes, journaled: the row is saved before the call.

``check_codes(kiosk, codes)`` saves a ``MarkingCheck`` (``pending``), marks it ``sent`` right before the
request goes out, then records the outcome: ``answered`` (``answer`` holds each code's verdict, ``req_id`` and
``req_timestamp`` go into the receipt), ``unavailable`` (no verdict: ``MARKING_OFFLINE_SALE`` decides) or
``refused`` (the service refused the request: a bad key, a malformed request). It never raises for the
service's failures: the state tells. A row left ``sent`` by a killed process is simply asked again under a
new row (a check has no side effects).

Floor: middle, the marking room (``marking``); imports only the bottom (``core``) (import-linter,
pyproject.toml).
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from core.addresses import without_credentials
from core.models import Kiosk
from marking.client import MarkingCheckClient, MarkingRefused, MarkingUnavailable
from marking.models import MarkingCheck


class MarkingCheckDisabled(Exception):
    """``MARKING_CHECK_URL`` is empty: the check service is off, the caller must not ask it."""


def is_enabled() -> bool:
    return bool(settings.MARKING_CHECK_URL)


def make_client() -> MarkingCheckClient:
    if not is_enabled():
        raise MarkingCheckDisabled("MARKING_CHECK_URL не задан: проверка кодов в службе выключена")
    return MarkingCheckClient(
        settings.MARKING_CHECK_URL, settings.MARKING_CHECK_TOKEN, settings.MARKING_CHECK_TIMEOUT,
        check_path=settings.MARKING_CHECK_PATH,
    )


def check_codes(kiosk: Kiosk, codes: list[str]) -> MarkingCheck:
    """Ask the check service about ``codes`` (one request); the saved row, its ``state`` telling the outcome."""
    client = make_client()
    check = MarkingCheck.objects.create(kiosk=kiosk, codes=list(codes), state=MarkingCheck.State.PENDING)
    with client:
        check.state, check.sent_at = MarkingCheck.State.SENT, timezone.now()
        check.save(update_fields=["state", "sent_at"])
        try:
            answer = client.check(list(codes))
        except MarkingUnavailable as exc:
            check.state, check.error = MarkingCheck.State.UNAVAILABLE, _message(exc)
        except MarkingRefused as exc:
            check.state, check.error = MarkingCheck.State.REFUSED, _message(exc)
        else:
            check.state = MarkingCheck.State.ANSWERED
            check.req_id, check.req_timestamp = answer.req_id, answer.req_timestamp
            check.answer = {
                "code": answer.code, "description": answer.description,
                "codes": {raw: v.as_json() for raw, v in answer.codes.items()},
            }
    check.finished_at = timezone.now()
    check.save(update_fields=["state", "error", "req_id", "req_timestamp", "answer", "finished_at"])
    return check


def _message(exc: Exception) -> str:
    return without_credentials(str(exc), mark="***")[:2000]
