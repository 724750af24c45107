"""Alerts to Telegram (nekassir.alerts) against a local fake of the Bot API over real HTTP.

The fake is an emulator (core.emulator_http): it takes ``POST /bot<token>/sendMessage`` like the Bot
API, keeps every message it accepted, and can answer 500 or 429 on demand.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from core.emulator_http import EmulatorApp, Request, Response, json_response
from core.models import Event
from fiscal.models import Shift
from nekassir import alerts
from nekassir.models import IikoAttempt, Order
from nekassir.telegram import TelegramClient, TelegramError
from payments.models import CardOperation, Settlement
from tests.factories import make_kiosk, make_terminal_kiosk

pytestmark = pytest.mark.django_db

TOKEN = "123456789:AAFakeTokenForTestsOnly-abcdefghijkl"  # the shape of a bot token
CHAT = "-1001234567890"


class FakeBotApi(EmulatorApp):
    name = "fake-telegram-bot-api"
    faults_known = {"http_500": "the Bot API answers 500 (its description echoes the request path)",
                    "rate_limited": "the Bot API answers 429 with retry_after 7"}

    def __init__(self, token: str):
        super().__init__()
        self.token = token
        self.messages: list[dict] = []

    def handle_protocol(self, request: Request) -> Response:
        if request.method != "POST" or request.path != f"/bot{self.token}/sendMessage":
            return json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        fault = self.faults.take(None)
        if fault and fault["fault"] == "http_500":
            # A real failure page may echo the request line, token included: the client must not show it.
            return json_response({"ok": False, "error_code": 500,
                                  "description": f"Internal error at /bot{self.token}/sendMessage"}, 500)
        if fault and fault["fault"] == "rate_limited":
            return json_response({"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
                                  "parameters": {"retry_after": 7}}, 429)
        body = request.json()
        if not body.get("chat_id") or not body.get("text") or len(body["text"]) > 4096:
            return json_response({"ok": False, "error_code": 400, "description": "Bad Request: message text"}, 400)
        self.messages.append(body)
        return json_response({"ok": True, "result": {"message_id": len(self.messages), "text": body["text"],
                                                     "chat": {"id": int(body["chat_id"]), "type": "supergroup"}}})

    def journal(self) -> list[dict]:
        return list(self.messages)

    def reset(self) -> None:
        self.messages.clear()


@pytest.fixture
def bot(serve_emulator, settings):
    running = serve_emulator(FakeBotApi(TOKEN))
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHAT_ID = CHAT
    settings.TELEGRAM_API_URL = running.url
    settings.TELEGRAM_TIMEOUT = 2.0
    settings.ALERTS_PANEL_URL = "http://192.168.1.10:8000"
    settings.ALERTS_VENUE_NAME = "Кафе на Ленина"
    return running


@pytest.fixture
def kiosk():
    return make_terminal_kiosk("http://127.0.0.1:1", kkm_url="http://127.0.0.1:2", code="K1")


def make_order(kiosk, status=Order.Status.NOT_DELIVERED, *, age=timedelta(0), n=1, **fields) -> Order:
    order = Order.objects.create(
        kiosk=kiosk, number=f"{kiosk.code}-{n:03d}", business_date=timezone.localdate(), seq=n, status=status,
        order_type="takeaway", total=Decimal("529.00"), request_body={}, body_hash=uuid.uuid4().hex,
        **{"step": Order.Step.DONE, **fields},
    )
    if age:
        Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - age)
    return order


def make_closed_shift(kiosk, number=7, **fields) -> Shift:
    now = timezone.now()
    return Shift.objects.create(kiosk=kiosk, fn_number="9999078900001234", number=number, state=Shift.State.CLOSED,
                                opened_at=now - timedelta(hours=14), closed_at=now - timedelta(minutes=5), **fields)


def texts(bot) -> list[str]:
    return [m["text"] for m in bot.journal()]


def sent_refs() -> list[str]:
    return sorted(Event.objects.filter(action=alerts.SENT).values_list("object_ref", flat=True))


# --- the scan -------------------------------------------------------------------------------------
def test_nothing_is_sent_or_recorded_when_telegram_is_not_configured(kiosk, settings):
    settings.TELEGRAM_BOT_TOKEN = settings.TELEGRAM_CHAT_ID = ""
    make_order(kiosk)
    assert alerts.scan_and_send() == {"configured": False}
    assert not Event.objects.filter(action__startswith="alert.").exists()


def test_an_order_not_delivered_to_iiko_is_sent_once(bot, kiosk):
    order = make_order(kiosk)
    IikoAttempt.objects.create(order=order, iiko_order_id=str(uuid.uuid4()), state="error",
                               error_message="iiko: CreationTimeout Creation timeout expired")
    first = alerts.scan_and_send()
    second = alerts.scan_and_send()
    assert first["sent"] == 1 and second == {"configured": True, "new": 0, "cleared": 0, "sent": 0, "failed": 0}
    [message] = bot.journal()
    assert message["chat_id"] == CHAT
    assert message["text"].startswith("Некассир — Кафе на Ленина:\n❗ Заказ K1-001 (529,00 ₽, киоск K1)")
    assert "Creation timeout expired" in message["text"]
    assert f"http://192.168.1.10:8000/orders/{order.pk}/" in message["text"]
    assert sent_refs() == [f"alert:order:{order.pk}:not_delivered:1"]


def test_a_resend_that_fails_again_alerts_again(bot, kiosk):
    order = make_order(kiosk)
    alerts.scan_and_send()
    Order.objects.filter(pk=order.pk).update(iiko_round=2)  # resent from the panel, not delivered again
    alerts.scan_and_send()
    assert len(bot.journal()) == 2


def test_an_order_that_needs_attention(bot, kiosk):
    make_order(kiosk, Order.Status.NEEDS_ATTENTION, error_message="Проверяем результат операции, подождите.")
    alerts.scan_and_send()
    assert "требует внимания: Проверяем результат операции" in texts(bot)[0]


def test_orders_older_than_the_lookback_are_left_alone(bot, kiosk, settings):
    settings.ALERTS_LOOKBACK_HOURS = 48
    make_order(kiosk, age=timedelta(hours=49))
    assert alerts.scan_and_send()["new"] == 0
    assert bot.journal() == []


def test_a_shift_closed_with_a_failed_settlement_is_not_reconciled(bot, kiosk):
    shift = make_closed_shift(kiosk)
    Settlement.objects.create(kiosk=kiosk, shift=shift, state=Settlement.State.FAILED, attempts=3,
                              message="Сверка итогов не выполнена: нет связи с банком")
    alerts.scan_and_send()
    alerts.scan_and_send()
    [text] = texts(bot)
    assert "Смена №7 киоска K1 закрыта не сверенной: Сверка итогов не выполнена: нет связи с банком" in text
    assert f"/shifts/{shift.pk}/" in text


def test_a_register_total_that_differs_from_our_receipts(bot, kiosk):
    totals = {"shift_totals": {"shiftTotals": {"receipts": {"sell": {"sum": 529.0, "count": 1}}}}}
    shift = make_closed_shift(kiosk, register_totals=totals)
    Settlement.objects.create(kiosk=kiosk, shift=shift, state=Settlement.State.OK, attempts=1)
    alerts.scan_and_send()
    assert "Приход: ККТ 529,00 ₽, наши чеки 0,00 ₽" in texts(bot)[0]


def test_a_reconciled_shift_says_nothing(bot, kiosk):
    shift = make_closed_shift(kiosk, register_totals={"shift_totals": {"shiftTotals": {"receipts": {}}}})
    Settlement.objects.create(kiosk=kiosk, shift=shift, state=Settlement.State.OK, attempts=1)
    assert alerts.scan_and_send()["new"] == 0


def test_register_not_ready_is_sent_once_cleared_and_sent_again_when_it_returns(bot, kiosk):
    kiosk.register_ready, kiosk.register_problem = False, "В ККТ нет бумаги"
    kiosk.save()
    alerts.scan_and_send()
    alerts.scan_and_send()
    assert texts(bot) == ["Некассир — Кафе на Ленина:\n❗ ККТ киоска K1 не готова: В ККТ нет бумаги"]
    kiosk.register_ready = True
    kiosk.save()
    alerts.scan_and_send()
    alerts.scan_and_send()
    assert texts(bot)[1] == "Некассир — Кафе на Ленина:\n✅ ККТ киоска K1 снова готова"
    kiosk.register_ready = False
    kiosk.save()
    alerts.scan_and_send()
    assert len(bot.journal()) == 3 and "не готова" in texts(bot)[2]
    actions = list(Event.objects.filter(object_ref="alert:kiosk:K1:register").order_by("id")
                   .values_list("action", flat=True))
    assert actions == [alerts.SENT, alerts.CLEARED, alerts.SENT]


def test_terminal_not_ready(bot, kiosk):
    kiosk.terminal_ready, kiosk.terminal_problem = False, "Терминал не отвечает"
    kiosk.save()
    alerts.scan_and_send()
    assert "Терминал киоска K1 не готов: Терминал не отвечает" in texts(bot)[0]


def test_fn_and_ofd_warnings_from_the_last_register_check(bot, kiosk, settings):
    settings.ALERTS_OFD_HOURS = 24
    first_unsent = (timezone.now() - timedelta(hours=30)).isoformat()
    Event.objects.create(action=alerts.CHECKED, kiosk=kiosk, object_ref="kiosk:K1", data={
        "problems": [], "fn_warnings": ["needReplacement", "ofdTimeout"], "ofd_not_sent": 12,
        "ofd_first_not_sent": first_unsent})
    alerts.scan_and_send()
    [text] = texts(bot)
    assert "ФН киоска K1: ФН нужно заменить" in text
    assert "ККТ киоска K1: 12 док. не переданы в ОФД" in text
    # A newer check that is clean clears both.
    Event.objects.create(action=alerts.CHECKED, kiosk=kiosk, object_ref="kiosk:K1",
                         data={"problems": [], "fn_warnings": [], "ofd_not_sent": 0})
    alerts.scan_and_send()
    assert "✅ Предупреждений ФН киоска K1 больше нет" in texts(bot)[1]
    assert "✅ ККТ киоска K1: документы переданы в ОФД" in texts(bot)[1]


def test_recent_unsent_ofd_documents_are_not_an_alert_yet(bot, kiosk, settings):
    settings.ALERTS_OFD_HOURS = 24
    Event.objects.create(action=alerts.CHECKED, kiosk=kiosk, object_ref="kiosk:K1", data={
        "fn_warnings": [], "ofd_not_sent": 3, "ofd_first_not_sent": timezone.now().isoformat()})
    assert alerts.scan_and_send()["new"] == 0


def test_a_failed_send_is_not_remembered_and_the_token_never_reaches_the_log(bot, kiosk, caplog):
    make_order(kiosk)
    bot.fault("http_500")
    with caplog.at_level(logging.DEBUG):
        result = alerts.scan_and_send()
    assert result["failed"] == 1 and bot.journal() == []
    assert not Event.objects.filter(action=alerts.SENT).exists()
    assert TOKEN not in caplog.text and "HTTP 500" in caplog.text
    assert alerts.scan_and_send()["sent"] == 1  # the next scan sends it
    assert len(bot.journal()) == 1


def test_rate_limited_waits_for_the_next_scan(bot, kiosk):
    make_order(kiosk)
    bot.fault("rate_limited")
    assert alerts.scan_and_send()["failed"] == 1
    assert alerts.scan_and_send()["sent"] == 1


def test_many_problems_are_split_into_messages_under_the_limit(bot, kiosk):
    for n in range(1, 61):
        make_order(kiosk, n=n, error_message="x" * 80)
        IikoAttempt.objects.create(order=Order.objects.get(seq=n), iiko_order_id=str(uuid.uuid4()), state="error",
                                   error_message="iiko: ошибка " + "подробности " * 10)
    result = alerts.scan_and_send()
    assert result["new"] == 60 and result["sent"] == len(bot.journal()) >= 2
    assert all(len(t) <= 4096 for t in texts(bot))
    assert sum(t.count("❗") for t in texts(bot)) == 60
    assert len(sent_refs()) == 60


def test_one_scan_at_a_time(bot, kiosk):
    from core.models import DeviceLock

    make_order(kiosk)
    # Another machine's cluster is scanning right now (the lock is shared through the database).
    DeviceLock.objects.create(key=alerts.LOCK_KEY, holder="other-host:4242:1:abcd", purpose="оповещения",
                              acquired_at=timezone.now(), expires_at=timezone.now() + timedelta(minutes=5))
    assert alerts.scan_and_send()["skipped"]
    assert bot.journal() == []


def test_a_kiosk_without_a_terminal_has_no_settlement_to_miss(bot):
    kiosk = make_kiosk("http://127.0.0.1:1", code="K9")
    make_closed_shift(kiosk, register_totals={"shift_totals": {"shiftTotals": {"receipts": {}}}})
    assert alerts.scan_and_send()["new"] == 0


# --- the client -----------------------------------------------------------------------------------
def test_the_client_sends_plain_text(bot):
    with TelegramClient(TOKEN, api_url=bot.url, timeout=2) as client:
        sent = client.send_message(CHAT, "проверка <b>не разметка</b>")
    assert sent.message_id == 1 and str(sent.chat_id) == CHAT
    assert bot.journal()[0] == {"chat_id": CHAT, "text": "проверка <b>не разметка</b>",
                                "disable_web_page_preview": True}
    assert TOKEN not in repr(client)


def test_client_errors_never_carry_the_token(bot):
    bot.fault("http_500")
    with TelegramClient(TOKEN, api_url=bot.url, timeout=2) as client, pytest.raises(TelegramError) as raised:
        client.send_message(CHAT, "x")
    assert raised.value.status == 500 and TOKEN not in str(raised.value) and "***" in str(raised.value)
    with TelegramClient(TOKEN, api_url="http://127.0.0.1:9", timeout=1) as client, \
            pytest.raises(TelegramError) as raised:
        client.send_message(CHAT, "x")  # nothing listens there
    assert TOKEN not in str(raised.value) and raised.value.status is None


def test_a_token_without_a_chat_stops_the_start_naming_the_variable():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "nekassir.settings", "TELEGRAM_BOT_TOKEN": TOKEN}
    env.pop("TELEGRAM_CHAT_ID", None)
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "TELEGRAM_CHAT_ID" in done.stderr and TOKEN not in done.stderr


# --- unknown card operations (issue 11 item 1) -------------------------------------------------------
def unknown_sale(kiosk, *, age=timedelta(minutes=10), n=1) -> Order:
    """An order waiting at the card step whose sale's outcome is unknown since ``age`` ago (the precondition)."""
    sent = timezone.now() - age
    sale = CardOperation.objects.create(op_id=str(uuid.uuid4()), kiosk=kiosk, kind="sale", state="unknown",
                                        transport="kkm", amount_kopecks=52900, reason="timeout", sent_at=sent)
    CardOperation.objects.filter(pk=sale.pk).update(created_at=sent)
    return make_order(kiosk, Order.Status.NEEDS_ATTENTION, age=age, n=n, step=Order.Step.CARD, card_sale=sale,
                      error_message="Проверяем результат операции, подождите.")


def test_an_unknown_card_operation_names_the_order_and_the_kiosk_once(bot, kiosk):
    order = unknown_sale(kiosk)
    alerts.scan_and_send()
    alerts.scan_and_send()
    [text] = texts(bot)
    assert f"Заказ {order.number} (529,00 ₽, киоск K1): исход оплаты картой неизвестен" in text
    assert "терминал заблокирован" in text and "«деньги списаны»" in text
    assert f"http://192.168.1.10:8000/orders/{order.pk}/" in text
    assert "требует внимания" not in text  # one line for the order, not a second generic one
    assert sent_refs() == [f"alert:card:{order.card_sale_id}:unknown"]


def test_an_unknown_card_operation_is_escalated_after_an_hour(bot, kiosk):
    order = unknown_sale(kiosk, age=timedelta(minutes=59))
    alerts.scan_and_send()
    CardOperation.objects.filter(pk=order.card_sale_id).update(sent_at=timezone.now() - timedelta(minutes=61))
    alerts.scan_and_send()
    alerts.scan_and_send()
    first, escalated = texts(bot)
    assert "Больше часа" not in first
    assert f"заказа {order.number} (529,00 ₽, киоск K1)" in escalated and "Больше часа" in escalated
    assert "терминал нельзя сверить" in escalated and "5 дней без сверки" in escalated
    assert f"/orders/{order.pk}/" in escalated


def test_an_unknown_card_operation_is_alerted_however_old(bot, kiosk, settings):
    """Not history: it blocks the terminal now, and the 5 days without a settlement run on."""
    order = unknown_sale(kiosk, age=timedelta(hours=settings.ALERTS_LOOKBACK_HOURS + 5))
    alerts.scan_and_send()
    [text] = texts(bot)
    assert order.number in text and "Больше часа" in text


def test_a_resolved_card_operation_is_no_longer_a_problem(bot, kiosk):
    order = unknown_sale(kiosk)
    CardOperation.objects.filter(pk=order.card_sale_id).update(state="approved")
    assert not [p for p in alerts.find_problems() if p.kind.startswith("card_")]
