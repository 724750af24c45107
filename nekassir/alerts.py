"""Alerts to the venue's Telegram chat: the problems staff must act on, each sent once.

``scan_and_send()`` runs every minute (a django-q2 schedule of the default cluster). It reads the
database only — it never calls a device — and finds:

* an order paid but **not delivered to iiko** (per delivery round: a resend that fails again alerts again);
* an order that **needs attention** (a device has not answered for a while);
* a **card operation whose outcome is unknown** (its terminal is blocked until it is resolved), naming the
  order and the kiosk, however old; **escalated** after ``CARD_UNKNOWN_ESCALATE_AFTER`` (a second alert):
  the terminal cannot be settled meanwhile, and Sber refuses cards after 5 days without a settlement;
* a closed shift **not reconciled**: its latest settlement failed or was skipped, or the register's own
  totals differ from our receipts or our receipts from the card operations;
* a kiosk whose **register** or **terminal is not ready**;
* **FN warnings** (replace the FN, memory nearly full, …) and **OFD**: documents not sent to the OFD for
  longer than ``ALERTS_OFD_HOURS``, as stored by the last register check (the panel's "check"), so they
  are as fresh as that check.

Remembering what was sent: every alert Telegram accepted is an ``Event`` with action ``alert.sent`` and
``object_ref`` ``alert:<key>``. Order and shift alerts are sent once, ever. A kiosk condition that goes
away gets an ``alert.cleared`` event (and a short "back to normal" line), so if it comes back it is sent
again. Nothing is recorded when the message was not accepted: the next scan tries again. Orders and
shifts older than ``ALERTS_LOOKBACK_HOURS`` are left out, so switching alerts on does not replay history.

Off unless ``TELEGRAM_BOT_TOKEN`` and ``TELEGRAM_CHAT_ID`` are set; the token never reaches a log.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Case, Count, OuterRef, Subquery, Sum, Value, When
from django.db.models.functions import Concat
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.events import record_event
from core.locks import DeviceBusy, device_lock
from core.models import Event, Kiosk
from core.money import rub
from fiscal.models import FiscalDocument, FiscalOperation, Shift
from nekassir.models import IikoAttempt, Order
from nekassir.panel.reconciliation import (
    card_totals,
    corrections_by_shift,
    document_totals,
    net_of,
    register_totals,
    split_annulments,
    total_gaps,
)
from nekassir.telegram import TelegramClient, TelegramError
from payments.models import CardOperation, Settlement

log = logging.getLogger(__name__)

SENT = "alert.sent"
CLEARED = "alert.cleared"
CHECKED = "fiscal.register.checked"  # the panel's register check (nekassir.panel.jobs.CHECKED)
# Card operation reasons that mean the terminal itself did not answer (payments.terminal: "not ready").
TERMINAL_DOWN_REASONS = ("not_reachable", "timeout", "lost_answer", "rejected")
LOCK_KEY = "alerts:scan"  # one scan at a time, across clusters and machines
MESSAGE_LIMIT = 3800  # under the Bot API's 4096 characters, with room for the header
CARD_UNKNOWN_ESCALATE_AFTER = timedelta(hours=1)
FN_WARNINGS = {
    "needReplacement": "ФН нужно заменить",
    "resourceExhausted": "ресурс ФН исчерпан",
    "memoryOverflow": "память ФН почти заполнена",
    "ofdTimeout": "превышено время ожидания ответа ОФД",
    "criticalError": "критическая ошибка ФН",
}


@dataclass(frozen=True)
class Problem:
    key: str  # stable identity: object_ref "alert:<key>"
    kind: str
    text: str  # one line, Russian, for the chat and the panel
    kiosk_id: int | None = None
    condition: bool = False  # a kiosk state that can go away (and come back): cleared, then alerted again
    data: dict[str, Any] = field(default_factory=dict)
    kiosk_code: str = ""
    # Since when: the order's time, the shift's close, the check that saw it; for a device not ready, the
    # failure that made it so (the last one: the flag has no time of its own). None when not known.
    since: datetime | None = None
    link: tuple[str, Any] | None = None  # the panel page it concerns: ("order", pk) or ("shift", pk)

    @property
    def ref(self) -> str:
        return f"alert:{self.key}"

    @property
    def chat_text(self) -> str:
        """The text with the panel link, when the panel's address is configured (the chat is elsewhere)."""
        return self.text + (_link(*self.link) if self.link else "")


def configured() -> bool:
    return bool(settings.TELEGRAM_BOT_TOKEN and settings.TELEGRAM_CHAT_ID)


# --- finding problems -----------------------------------------------------------------------------
# A fixed number of queries however many orders, shifts and kiosks there are: the scan runs every minute
# and the venue page shows the same list (nekassir.panel.alerts_panel), also at a million orders.
def find_problems(now: datetime | None = None, *, order_limit: int | None = None) -> list[Problem]:
    """Every problem present now (sent or not), from the database only. ``order_limit``: the oldest
    that many order problems at most (the panel's list; the chat takes them all)."""
    now = now or timezone.now()
    since = now - timedelta(hours=settings.ALERTS_LOOKBACK_HOURS)
    cards = _card_problems(now)
    # An order with an unknown card operation gets that line only, not also the generic "needs attention".
    covered = {p.link[1] for p in cards if p.link}
    return [*cards, *_order_problems(since, order_limit, covered), *_shift_problems(since), *_kiosk_problems(now)]


def _link(name: str, *args: Any) -> str:
    base = settings.ALERTS_PANEL_URL.rstrip("/")
    if not base:
        return ""
    try:
        return f" {base}{reverse(f'panel:{name}', args=args)}"
    except NoReverseMatch:
        return ""


def _order_problems(since: datetime, limit: int | None = None, covered: set | None = None) -> list[Problem]:
    problems = []
    last_error = IikoAttempt.objects.filter(order=OuterRef("pk")).order_by("-id").values("error_message")[:1]
    orders = (Order.objects.filter(created_at__gte=since,
                                   status__in=[Order.Status.NOT_DELIVERED, Order.Status.NEEDS_ATTENTION])
              .select_related("kiosk").annotate(last_error=Subquery(last_error)).order_by("created_at"))
    if covered:
        orders = orders.exclude(pk__in=covered)
    for order in orders[:limit] if limit is not None else orders:
        common: dict[str, Any] = {"kiosk_id": order.kiosk_id, "kiosk_code": order.kiosk.code,
                                  "since": order.created_at, "link": ("order", order.pk)}
        if order.status == Order.Status.NOT_DELIVERED:
            last = order.last_error or ""
            reason = f": {last[:200]}" if last else ""
            problems.append(Problem(
                f"order:{order.pk}:not_delivered:{order.iiko_round}", "order_not_delivered",
                f"Заказ {order.number} ({rub(order.total)}, киоск {order.kiosk.code}) оплачен, но не передан в iiko"
                f"{reason}. Передайте его на кухню вручную или повторите отправку.", **common))
        else:
            problems.append(Problem(
                f"order:{order.pk}:needs_attention", "order_needs_attention",
                f"Заказ {order.number} (киоск {order.kiosk.code}) требует внимания: "
                f"{order.error_message or 'устройство долго не отвечает'}", **common))
    return problems


def _card_problems(now: datetime) -> list[Problem]:
    """Money operations whose outcome is unknown, one line per order (its oldest), however old: each blocks
    its terminal now. Two queries: the unknown operations (index kiosk+state), then their orders."""
    active = Kiosk.objects.filter(active=True).values("pk")
    unknown = list(CardOperation.objects.filter(kiosk_id__in=active, state=CardOperation.State.UNKNOWN,
                                                kind__in=CardOperation.MONEY_KINDS)
                   .select_related("kiosk", "original").order_by("id"))
    if not unknown:
        return []
    oldest: dict[int, CardOperation] = {}  # by the sale it concerns (an order has one sale)
    for op in unknown:
        oldest.setdefault(_sale_id_of(op), op)
    orders = {order.card_sale_id: order for order in Order.objects.filter(card_sale_id__in=list(oldest))}
    return [_card_problem(op, orders.get(sale_id), now) for sale_id, op in oldest.items()]


def _sale_id_of(op) -> int:
    """The sale an operation concerns: itself, or the sale its cancel/refund/reversal (of a refund) goes back to."""
    if op.kind == "sale" or op.original is None:
        return op.pk
    return op.original.pk if op.original.kind == "sale" or not op.original.original_id else op.original.original_id


def _card_problem(op, order: Order | None, now: datetime) -> Problem:
    since = op.sent_at or op.created_at
    code = op.kiosk.code
    what = f"операция «{op.get_kind_display()}» по карте" if op.kind != "sale" else "оплата картой"
    subject = (f"заказа {order.number} ({rub(order.total)}, киоск {code})" if order is not None
               else f"на терминале киоска {code} ({rub(op.amount)})")
    common = {"kiosk_id": op.kiosk_id, "kiosk_code": code, "since": since, "link": ("order", order.pk) if order
              else None, "data": {"operation": op.op_id}}
    if now - since >= CARD_UNKNOWN_ESCALATE_AFTER:
        return Problem(
            f"card:{op.pk}:unknown:escalated", "card_unknown_escalated",
            f"Больше часа не разрешена {what} {subject}, исход неизвестен с {_when(since)}: пока она не разрешена, "
            "терминал нельзя сверить (сверка итогов), а Сбербанк перестаёт принимать карты через 5 дней без сверки. "
            "Разрешите её на странице заказа: «деньги списаны» по слипу или «не списаны» по отчёту терминала.",
            **common)
    head = f"Заказ {order.number} ({rub(order.total)}, киоск {code})" if order is not None else f"Киоск {code}"
    return Problem(
        f"card:{op.pk}:unknown", "card_unknown",
        f"{head}: исход {'оплаты картой' if op.kind == 'sale' else what} неизвестен с {_when(since)} — "
        "терминал заблокирован, новые заказы на киоске не принимаются. Если терминал не ответит сам, решите на "
        "странице заказа: «деньги списаны» (по слипу) или «не списаны» (по отчёту терминала).", **common)


def _shift_problems(since: datetime) -> list[Problem]:
    problems: list[Problem] = []
    shifts = list(Shift.objects.filter(state=Shift.State.CLOSED, closed_at__gte=since).select_related("kiosk")
                  .order_by("closed_at"))
    if not shifts:
        return problems
    ids = [shift.pk for shift in shifts]
    latest: dict[int | None, Settlement] = {}
    for settled in Settlement.objects.filter(shift_id__in=ids).order_by("id"):
        latest[settled.shift_id] = settled
    # The totals of every shift at once (grouped by shift), rather than two queries per shift.
    documents: dict[int, list] = defaultdict(list)
    for shift_id, *row in (FiscalDocument.objects.filter(shift_id__in=ids, doc_type__in=["sell", "sellReturn"])
                           .values("shift_id", "doc_type").annotate(s=Sum("total"), n=Count("id"))
                           .values_list("shift_id", "doc_type", "s", "n")):
        documents[shift_id].append(row)
    card: dict[int, list] = defaultdict(list)
    for shift_id, *row in (CardOperation.objects.filter(shift_id__in=ids, state="approved",
                                                        kind__in=["sale", "cancel", "refund"])
                           .values("shift_id", "kind").annotate(s=Sum("amount_kopecks"), n=Count("id"))
                           .values_list("shift_id", "kind", "s", "n")):
        card[shift_id].append(row)
    split = split_annulments(ids)
    corrections = corrections_by_shift(ids)  # a gap a manager fixed with a correction receipt is closed
    for shift in shifts:
        reasons = []
        settlement = latest.get(shift.pk)
        if shift.kiosk.terminal_transport and settlement is None:
            reasons.append("сверка итогов не выполнялась")
        elif settlement is not None and settlement.state != Settlement.State.OK:
            reasons.append(settlement.message or f"сверка итогов: {settlement.get_state_display()}")
        if shift.reconciled is False:
            reasons.append(shift.reconciliation_note or "отмечена как не сверенная")
        reasons += total_gaps(register_totals(shift.register_totals), document_totals(documents[shift.pk]),
                              card_totals(card[shift.pk]), net_of(split.get(shift.pk, [])),
                              corrections.get(shift.pk))
        if reasons:
            problems.append(Problem(
                f"shift:{shift.pk}:unreconciled", "shift_unreconciled",
                f"Смена №{shift.number} киоска {shift.kiosk.code} закрыта не сверенной: {'; '.join(reasons)}",
                shift.kiosk_id, kiosk_code=shift.kiosk.code, since=shift.closed_at, link=("shift", shift.pk)))
    return problems


def _kiosk_problems(now: datetime) -> list[Problem]:
    # The last reading of each register's FN and OFD state: the panel's check. It is found by the kiosk's
    # ref, which is indexed (the kiosk's own events run into the hundreds of thousands), one subquery each.
    last_check = (Event.objects.filter(object_ref=Concat(Value("kiosk:"), OuterRef("code")), action=CHECKED)
                  .order_by("-id").values("id")[:1])
    # Since when a device is not ready: its last failure, which set the flag (index kiosk+state; failures are few).
    register_failed = (FiscalOperation.objects.filter(kiosk=OuterRef("pk"), state=FiscalOperation.State.FAILED)
                       .order_by("-id").values("created_at")[:1])
    terminal_failed = (CardOperation.objects.filter(kiosk=OuterRef("pk"), state__in=["declined", "unknown"],
                                                    reason__in=TERMINAL_DOWN_REASONS)
                       .order_by("-id").values("created_at")[:1])
    kiosks = list(Kiosk.objects.filter(active=True).annotate(
        last_check_id=Subquery(last_check),
        # Looked up only for a device not ready (CASE runs its subquery only when the condition holds).
        register_failed_at=Case(When(register_ready=False, then=Subquery(register_failed))),
        terminal_failed_at=Case(When(terminal_ready=False, then=Subquery(terminal_failed)))).order_by("code"))
    checks = Event.objects.only("data", "created_at").in_bulk([k.last_check_id for k in kiosks if k.last_check_id])
    problems = []
    for kiosk in kiosks:
        common: dict[str, Any] = {"kiosk_code": kiosk.code, "condition": True}
        if kiosk.has_register and not kiosk.register_ready:
            reason = kiosk.register_problem or "причина неизвестна"
            problems.append(Problem(f"kiosk:{kiosk.code}:register", "register_not_ready",
                                    f"ККТ киоска {kiosk.code} не готова: {reason}", kiosk.pk,
                                    since=kiosk.register_failed_at, **common))
        if kiosk.terminal_transport and not kiosk.terminal_ready:
            reason = kiosk.terminal_problem or "причина неизвестна"
            problems.append(Problem(f"kiosk:{kiosk.code}:terminal", "terminal_not_ready",
                                    f"Терминал киоска {kiosk.code} не готов: {reason}", kiosk.pk,
                                    since=kiosk.terminal_failed_at, **common))
        check = checks.get(kiosk.last_check_id)
        if not kiosk.has_register or check is None:
            continue
        warnings = sorted(w for w in (check.data or {}).get("fn_warnings") or [] if w != "ofdTimeout")
        if warnings:
            names = ", ".join(FN_WARNINGS.get(w, w) for w in warnings)
            problems.append(Problem(f"kiosk:{kiosk.code}:fn", "fn_warning",
                                    f"ФН киоска {kiosk.code}: {names} (по проверке ККТ {_when(check.created_at)})",
                                    kiosk.pk, data={"warnings": warnings}, since=check.created_at, **common))
        ofd = _ofd_problem(kiosk, check, now)
        if ofd:
            problems.append(ofd)
    return problems


def _ofd_problem(kiosk: Kiosk, check: Event, now: datetime) -> Problem | None:
    data = check.data or {}
    unsent = int(data.get("ofd_not_sent") or 0)
    first = parse_datetime(str(data.get("ofd_first_not_sent") or "")) if data.get("ofd_first_not_sent") else None
    if not unsent or first is None:
        return None
    if timezone.is_naive(first):
        first = timezone.make_aware(first)
    if now - first < timedelta(hours=settings.ALERTS_OFD_HOURS):
        return None
    return Problem(f"kiosk:{kiosk.code}:ofd", "ofd_warning",
                   f"ККТ киоска {kiosk.code}: {unsent} док. не переданы в ОФД, первый — {_when(first)}. "
                   "Проверьте интернет на киоске; через 30 дней ФН заблокирует продажи.",
                   kiosk.pk, condition=True, data={"not_sent": unsent}, kiosk_code=kiosk.code, since=first)


def _when(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%d.%m %H:%M") if moment else "—"


# --- remembering and sending ----------------------------------------------------------------------
def _states(refs: list[str]) -> dict[str, str]:
    """The last alert event (sent / cleared) of each ref that has one."""
    states: dict[str, str] = {}
    for ref, action in (Event.objects.filter(object_ref__in=refs, action__in=[SENT, CLEARED])
                        .order_by("id").values_list("object_ref", "action")):
        states[ref] = action
    return states


def _condition_refs() -> list[str]:
    """Every kiosk condition that may have an open alert (a deactivated kiosk's stay as they were)."""
    codes = Kiosk.objects.filter(active=True).values_list("code", flat=True)
    return [f"alert:kiosk:{code}:{what}" for code in codes for what in ("register", "terminal", "fn", "ofd")]


def pending(problems: list[Problem]) -> tuple[list[Problem], list[str]]:
    """(problems not sent yet, refs of condition alerts whose condition went away)."""
    present = {p.ref for p in problems}
    states = _states(sorted(present | set(_condition_refs())))
    new = [p for p in problems if states.get(p.ref) != SENT]
    cleared = sorted(ref for ref, action in states.items()
                     if action == SENT and ref not in present and ref.startswith("alert:kiosk:"))
    return new, cleared


_CLEARED_TEXT = {
    "register": "ККТ киоска {code} снова готова",
    "terminal": "Терминал киоска {code} снова готов",
    "fn": "Предупреждений ФН киоска {code} больше нет",
    "ofd": "ККТ киоска {code}: документы переданы в ОФД",
}


def _cleared_line(ref: str) -> str:
    _, _, code, what = ref.split(":", 3)
    return "✅ " + _CLEARED_TEXT.get(what, "{code}: в порядке").format(code=code)


def messages(new: list[Problem], cleared: list[str]) -> list[tuple[str, list[Problem], list[str]]]:
    """The chat messages, each with the problems and cleared refs it carries (each under the size limit)."""
    venue = settings.ALERTS_VENUE_NAME
    header = f"Некассир{f' — {venue}' if venue else ''}:"
    items = [("❗ " + p.chat_text[:1500], p, None) for p in new] + [(_cleared_line(r), None, r) for r in cleared]
    out: list[tuple[str, list[Problem], list[str]]] = []
    lines: list[str] = []
    carried: list[Problem] = []
    refs: list[str] = []
    for text, problem, ref in items:
        if lines and len(header) + sum(len(x) + 1 for x in lines) + len(text) > MESSAGE_LIMIT:
            out.append(("\n".join([header, *lines]), carried, refs))
            lines, carried, refs = [], [], []
        lines.append(text)
        if problem is not None:
            carried.append(problem)
        if ref is not None:
            refs.append(ref)
    if lines:
        out.append(("\n".join([header, *lines]), carried, refs))
    return out


def scan_and_send() -> dict[str, Any]:
    """The schedule's job: find problems, send the new ones, remember what Telegram accepted."""
    if not configured():
        return {"configured": False}
    try:
        with device_lock(LOCK_KEY, purpose="оповещения", wait=0):
            return _scan_and_send()
    except DeviceBusy:
        return {"configured": True, "skipped": "another scan is running"}


def _scan_and_send() -> dict[str, Any]:
    new, cleared = pending(find_problems())
    result: dict[str, Any] = {"configured": True, "new": len(new), "cleared": len(cleared), "sent": 0, "failed": 0}
    if not new and not cleared:
        return result
    kiosks = Kiosk.objects.in_bulk([p.kiosk_id for p in new if p.kiosk_id])
    with TelegramClient(settings.TELEGRAM_BOT_TOKEN, api_url=settings.TELEGRAM_API_URL,
                        timeout=settings.TELEGRAM_TIMEOUT) as client:
        for text, problems, refs in messages(new, cleared):
            try:
                client.send_message(settings.TELEGRAM_CHAT_ID, text)
            except TelegramError as exc:
                # Not remembered as sent: the next scan tries again. (The error never carries the token.)
                log.warning("alerts: Telegram did not take a message of %d line(s): %s",
                            len(problems) + len(refs), exc)
                result["failed"] += 1
                if exc.retry_after:
                    break  # rate limited: the rest waits for the next scan
                continue
            for problem in problems:
                record_event(SENT, kiosk=kiosks.get(problem.kiosk_id), object_ref=problem.ref,
                             message=problem.chat_text[:1000], data={"kind": problem.kind, **problem.data})
            for ref in refs:
                record_event(CLEARED, object_ref=ref, message=_cleared_line(ref))
            result["sent"] += 1
    return result
