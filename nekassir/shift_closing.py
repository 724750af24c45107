"""Closing a kiosk's shift, the whole of it: a workflow across the rooms, so it lives on the top floor.

In order, under the kiosk's sale lock (no checkout or refund runs meanwhile):
1. the orders in flight: an order between its receipt and its payment or annulment is carried on
   (``nekassir.checkout.finish_between_receipt_and_payment``), and a refund whose money went back gets its return
   receipt (``nekassir.refunds.finish_return_receipts``), so that they land in the shift being closed;
2. the card terminal's settlement (``payments.settlement.settle_before_close``), handed down to the register's
   close as its ``before_close``;
3. the register's closeShift and the closing report (``fiscal.shifts.close_register``).
``kkt close``, the panel and the automatic close (``nekassir.autoclose``) all close through here.
"""

from __future__ import annotations

import logging

from django.conf import settings

from core.locks import DeviceBusy, device_lock, sale_lock_key
from core.models import Kiosk
from fiscal.models import Shift
from fiscal.shifts import close_register
from nekassir.checkout import finish_between_receipt_and_payment
from nekassir.refunds import finish_return_receipts
from payments.settlement import settle_before_close

log = logging.getLogger(__name__)

# What must land in the shift before it closes, in this order (an order's annulment or payment first). Each
# finishes what it can and says why the close must wait ("" when nothing does).
UNFINISHED_DOCUMENTS = (finish_between_receipt_and_payment, finish_return_receipts)


def close_shift(kiosk: Kiosk, *, user=None, reason: str = "manual", force: bool = False,
                wait: float | None = None) -> Shift | None:
    """Finish the documents in flight, settle the terminal, then close the fiscal shift.

    A payment in progress on the kiosk is never interrupted: the close waits for it up to ``wait``
    seconds, then refuses (DeviceBusy) — or, with ``force`` (the automatic close, which must not let
    the shift run past 24 hours), closes anyway: the register lock still keeps the two apart, and a
    terminal still busy only means its settlement is skipped and flagged.
    Returns the closed shift, or None when the register had no open shift.
    """
    wait = settings.CLOSE_WAIT_FOR_SALE if wait is None else wait
    try:
        with device_lock(sale_lock_key(kiosk), purpose=f"{kiosk.code}: закрытие смены", wait=wait):
            # With the sale lock no checkout runs: what one left half done (a killed worker) is finished now.
            unfinished = _finish_documents(kiosk)
            if unfinished and not force:
                raise DeviceBusy(sale_lock_key(kiosk), "", unfinished)
            return close_register(kiosk, before_close=settle_before_close, user=user, reason=reason)
    except DeviceBusy:
        if not force:
            raise
        log.warning("kiosk=%s closing the shift while an order is still in progress (%s)", kiosk.code, reason)
        return close_register(kiosk, before_close=settle_before_close, user=user,
                              reason=f"{reason}; заказ ещё выполнялся")


def _finish_documents(kiosk: Kiosk) -> str:
    # A manual close refuses while one still waits; the automatic close (``force``) closes anyway and the
    # leftover is flagged by reconciliation.
    reasons = [reason for finish in UNFINISHED_DOCUMENTS if (reason := finish(kiosk))]
    return "; ".join(reasons)
