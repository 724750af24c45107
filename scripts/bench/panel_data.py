"""The panel's data at scale: a venue's years of history generated in PostgreSQL with INSERT … SELECT.

10 kiosks, ``shifts`` shifts (one a day per kiosk, the last of each kiosk still open), ``orders`` orders
spread evenly over them, and for each order what the checkout really leaves behind (its rows are shaped
after a real bench checkout): the order and its lines, a getShiftStatus and a sell fiscal operation, the
sell receipt, the card sale, the iiko attempt and three journal events. Every 50th order was declined
and annulled (sell + sellReturn, a declined sale); every 1000th (+7) was not delivered to iiko. Each
closed shift has its open/close reports, the register's totals (equal to our documents), a settlement
and, every tenth, a manager's manual close in the journal.

Generated once per database and kept: ``bench_meta`` records the version and the sizes; a database
whose record matches is reused as is (only ``migrate`` runs).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

# 2: the three floors (issue 12: core_* tables, migrations recreated), card operations resolved by hand
# (issue 11), orders with marked goods (issue 13): data made by version 1 no longer fits the schema.
# 3: the history ends at the generation time (each day's shifts open 12 h 20 min before that time of day,
# orders over 12 h), not at 20:00 of the generation day: a venue has no orders in the future, and version 2
# put thousands of them there, which the reports read live as "not yet summarised".
GENERATOR_VERSION = 3
KIOSKS = 10
VENUE_TZ = ZoneInfo("Europe/Moscow")  # the orders' business_date below is taken on this clock
# A day's shifts open SHIFT_BEFORE_END before the history's end (plus up to 9 minutes, one per kiosk) and take
# orders for 12 hours: they end 11 minutes before it.
SHIFT_BEFORE_END = timedelta(hours=12, minutes=20)


def history_end(now: datetime) -> datetime:
    """The moment the generated history ends: ``now`` (to the minute), unless a day's shifts would then cross
    the venue's midnight. The order numbers restart each business day, so two shifts of one kiosk would then
    share a date and their numbers (generating at 00:47 failed: order_pickup_seq_per_kiosk_day); when the
    first shift would open before midnight, the history ends at 23:59 of the day before. Never in the future."""
    local = now.astimezone(VENUE_TZ).replace(second=0, microsecond=0)
    midnight = datetime.combine(local.date(), clock(0), VENUE_TZ)
    return local if local - SHIFT_BEFORE_END >= midnight else midnight - timedelta(minutes=1)


def existing(cursor) -> dict[str, Any] | None:
    cursor.execute("SELECT to_regclass('bench_meta') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return None
    cursor.execute("SELECT value FROM bench_meta WHERE key = 'generated'")
    row = cursor.fetchone()
    return row[0] if row else None


def generate(orders: int, shifts: int, say) -> dict[str, Any]:
    """Fill the (migrated, empty) database of the default connection; returns what was made."""
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from core.models import IikoConnection, Kiosk
    from iiko import emulator as menu

    assert shifts % KIOSKS == 0 and orders >= shifts, "shifts must be a multiple of 10, orders ≥ shifts"
    started = time.monotonic()
    timings: dict[str, float] = {}
    with transaction.atomic():
        if not User.objects.filter(username="bench").exists():
            User.objects.create_superuser("bench", "bench@example.invalid", "bench")
        iiko = IikoConnection.objects.create(name="iiko", base_url="https://api-ru.iiko.services",
                                             api_login="bench-login")
        kiosk_ids = []
        for n in range(1, KIOSKS + 1):
            kiosk = Kiosk.objects.create(
                code=f"K{n:02d}", name=f"Киоск {n}", atol_url=f"http://192.0.2.{n}:16732", atol_device_id="",
                terminal_transport="kkm", terminal_kind="sberbank", kkm_url=f"http://192.0.2.{n}:5893",
                kkm_device_number=1, fn_number=f"99990000000000{n:02d}", iiko=iiko,
                iiko_organization_id=menu.ORG_ID, iiko_terminal_group_id=menu.TERMINAL_GROUP_ID,
                iiko_payment_type_id=menu.CARD_PAYMENT_TYPE_ID,
                iiko_order_type_takeaway_id=menu.ORDER_TYPE_TAKEAWAY_ID,
                iiko_order_type_dine_in_id=menu.ORDER_TYPE_DINE_IN_ID,
            )
            kiosk_ids.append(kiosk.pk)
        user_id = User.objects.get(username="bench").pk
    params = {"n": orders, "s": shifts, "k": KIOSKS, "kids": kiosk_ids, "uid": user_id,
              "days": shifts // KIOSKS, "end": int(history_end(datetime.now(VENUE_TZ)).timestamp()),
              "before": SHIFT_BEFORE_END // timedelta(minutes=1)}
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        for name, sql in STEPS:
            t0 = time.monotonic()
            say(f"  panel data: {name} …")
            cursor.execute(sql.format(**{k: v for k, v in params.items() if k != "kids"},
                                      kids="ARRAY[" + ",".join(map(str, kiosk_ids)) + "]::bigint[]"))
            timings[name] = round(time.monotonic() - t0, 1)
        _reset_sequences(cursor)
        cursor.execute("SELECT pg_database_size(current_database())")
        size = cursor.fetchone()[0]
        meta = {"version": GENERATOR_VERSION, "orders": orders, "shifts": shifts, "kiosks": KIOSKS,
                "seconds": round(time.monotonic() - started, 1), "steps": timings,
                "size_mib": round(size / 1024 / 1024), "generated_at": time.strftime("%Y-%m-%d %H:%M")}
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb NOT NULL)")
        cursor.execute("INSERT INTO bench_meta VALUES ('generated', %s) ON CONFLICT (key) DO UPDATE SET value = "
                       "EXCLUDED.value", [json.dumps(meta)])
    return meta


def vacuum_analyze(database_url: str) -> None:
    """VACUUM needs autocommit, outside Django's connection handling."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def _reset_sequences(cursor) -> None:
    for table in ("fiscal_shift", "fiscal_fiscaloperation", "fiscal_fiscaldocument", "payments_cardoperation",
                  "payments_settlement", "nekassir_orderline", "nekassir_iikoattempt", "core_event"):
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - fixed names
                       f"(SELECT coalesce(max(id), 1) FROM {table}))")


# The SQL below is formatted from integers only (sizes, ids), never from outside input.
# Ids are computed, so every step can refer to the rows of another without a lookup:
#   shift s (1..S): kiosk ((s-1) % 10)+1, its day (s-1)/10; the last day's shifts are open.
#   order o (1..N): shift (o-1)*S/N + 1; cancelled when o % 50 = 0; not delivered when o % 1000 = 7.
#   fiscal operations: 2o-1 getShiftStatus, 2o sell; 2N + o/50 the annulment; 2N+N/50+2s-1 / +2s open/close.
#   fiscal documents: o sell; N + o/50 sellReturn; N+N/50+2s-1 / +2s open/close report.
#   card operations: o the sale; N + s the settlement.
_SHIFT = """
    SELECT s, (({kids})[((s - 1) % {k}) + 1]) AS kiosk_id, ((s - 1) % {k}) + 1 AS kno, (s - 1) / {k} AS day,
           (s - 1) / {k} = {days} - 1 AS is_open,
           to_timestamp({end}) - make_interval(mins => {before})
               - make_interval(days => {days} - 1 - (s - 1) / {k})
               + make_interval(mins => ((s - 1) % {k})) AS opened_at
    FROM generate_series(1, {s}) AS s
"""
_ORDER = """
    SELECT o, sh.s, sh.kiosk_id, sh.kno, sh.day, sh.opened_at, sh.is_open,
           o - (((sh.s - 1)::bigint * {n} + {s} - 1) / {s}) AS seq,
           sh.opened_at + make_interval(secs => (((o - 1)::bigint * {s}) % {n})::float8 / {n} * 12 * 3600) AS at,
           CASE WHEN o % 50 = 0 THEN 'cancelled' WHEN o % 1000 = 7 THEN 'not_delivered' ELSE 'completed' END AS status,
           (200 + (o % 17) * 37)::numeric(12, 2) AS total,
           md5('o' || o)::uuid AS id
    FROM generate_series(1, {n}) AS o
    JOIN ({shift}) AS sh ON sh.s = ((o - 1)::bigint * {s} / {n}) + 1
"""

STEPS: list[tuple[str, str]] = [
    ("shifts", """
INSERT INTO fiscal_shift (id, kiosk_id, fn_number, number, state, opened_at, closed_at, expires_at,
                          receipts_count, register_totals, reconciled, reconciliation_note, close_requested_at)
SELECT s, kiosk_id, '99990000000000' || lpad(kno::text, 2, '0'), day + 1,
       CASE WHEN is_open THEN 'open' ELSE 'closed' END, opened_at,
       CASE WHEN is_open THEN NULL ELSE opened_at + interval '13 hours' END, opened_at + interval '24 hours',
       NULL, NULL, CASE WHEN is_open THEN NULL ELSE true END, '', NULL
FROM (""" + _SHIFT + """) AS sh
"""),
    ("fiscal operations", """
INSERT INTO fiscal_fiscaloperation (id, uuid, kiosk_id, task_type, request, state, reference, result, raw_answer,
    error_code, error_kind, error_message, fn_number, fd_number, fpd, receipt_number, shift_number, not_printed,
    attempts, created_at, sent_at, finished_at)
SELECT 2 * o - 1 + t, md5('f' || (2 * o - 1 + t))::uuid, kiosk_id,
       CASE t WHEN 0 THEN 'getShiftStatus' ELSE 'sell' END,
       CASE t WHEN 0 THEN '{{"type": "getShiftStatus"}}'
            ELSE '{{"type": "sell", "taxationType": "osn", "items": [{{"type": "position", "name": '
                 || '"Бургер «Классический»", "price": ' || total || ', "quantity": 1, "amount": ' || total
                 || ', "tax": {{"type": "vat22"}}, "paymentMethod": "fullPayment", "paymentObject": "commodity", '
                 || '"measurementUnit": "piece"}}], "payments": [{{"type": "electronically", "sum": ' || total
                 || '}}], "total": ' || total || '}}' END,
       'done', CASE t WHEN 0 THEN '' ELSE 'order:' || id || ':sell' END,
       CASE t WHEN 0 THEN jsonb_build_object('shiftStatus', jsonb_build_object('state', 'opened', 'number', 1,
                'expiredTime', '2026-01-01T08:00:00+03:00'))
            ELSE jsonb_build_object('warnings', jsonb_build_object('notPrinted', false), 'fiscalParams',
                jsonb_build_object('total', total::text, 'fnsUrl', 'www.nalog.gov.ru',
                'fnNumber', '99990000000000' || lpad(kno::text, 2, '0'), 'shiftNumber', day + 1,
                'fiscalDocumentSign', (1000000000 + o)::text, 'registrationNumber', '5552733807052011',
                'fiscalReceiptNumber', seq, 'fiscalDocumentNumber', o, 'fiscalDocumentDateTime', at::text)) END,
       repeat('x', CASE t WHEN 0 THEN 185 ELSE 432 END), NULL, '', '',
       CASE t WHEN 0 THEN '' ELSE '99990000000000' || lpad(kno::text, 2, '0') END,
       CASE t WHEN 0 THEN NULL ELSE o END, CASE t WHEN 0 THEN '' ELSE (1000000000 + o)::text END,
       CASE t WHEN 0 THEN NULL ELSE seq END, CASE t WHEN 0 THEN NULL ELSE day + 1 END, false, 1,
       at + make_interval(secs => t), at + make_interval(secs => t), at + make_interval(secs => t + 1)
FROM (""" + _ORDER.replace("{shift}", _SHIFT) + """) AS ord CROSS JOIN generate_series(0, 1) AS t
"""),
    ("annulments and shift reports (operations)", """
INSERT INTO fiscal_fiscaloperation (id, uuid, kiosk_id, task_type, request, state, reference, result, raw_answer,
    error_code, error_kind, error_message, fn_number, fd_number, fpd, receipt_number, shift_number, not_printed,
    attempts, created_at, sent_at, finished_at)
SELECT 2 * {n} + o / 50, md5('a' || o)::uuid, kiosk_id, 'sellReturn', '{{"type": "sellReturn"}}', 'done',
       'order:' || id || ':annul', jsonb_build_object('fiscalParams', jsonb_build_object('total', total::text)),
       '', NULL::integer, '', '', '99990000000000' || lpad(kno::text, 2, '0'), {n} + o / 50, (2000000000 + o)::text,
       seq + 1, day + 1, false, 1, at + interval '7 seconds', at + interval '7 seconds', at + interval '8 seconds'
FROM (""" + _ORDER.replace("{shift}", _SHIFT) + """) AS ord WHERE status = 'cancelled'
UNION ALL
SELECT 2 * {n} + {n} / 50 + 2 * s - 1 + r, md5('r' || s || ':' || r)::uuid, kiosk_id,
       CASE r WHEN 0 THEN 'openShift' ELSE 'closeShift' END, '{{}}', 'done', 'shift:' || s, '{{}}'::jsonb, '',
       NULL::integer,
       '', '', '99990000000000' || lpad(kno::text, 2, '0'), {n} + {n} / 50 + 2 * s - 1 + r, (3000000000 + s)::text,
       NULL::integer, day + 1, false, 1, opened_at + make_interval(hours => 13 * r),
       opened_at + make_interval(hours => 13 * r),
       opened_at + make_interval(hours => 13 * r)
FROM (""" + _SHIFT + """) AS sh CROSS JOIN generate_series(0, 1) AS r WHERE r = 0 OR NOT is_open
"""),
    ("fiscal documents", """
INSERT INTO fiscal_fiscaldocument (id, fn_number, fd_number, kiosk_id, shift_id, operation_id, doc_type, fpd,
    receipt_number, shift_number, total, registered_at, printed, registration_number, fns_url)
SELECT id, fn_number, fd_number, kiosk_id, shift_number_id, id_op,
       CASE task_type WHEN 'sell' THEN 'sell' WHEN 'sellReturn' THEN 'sellReturn' WHEN 'openShift' THEN 'openShift'
            ELSE 'closeShift' END,
       fpd, receipt_number, day_number, total, finished_at, true, '5552733807052011', 'www.nalog.gov.ru'
FROM (
    SELECT op.fd_number AS id, op.fn_number, op.fd_number, op.kiosk_id, op.id AS id_op, op.task_type, op.fpd,
           op.receipt_number, op.shift_number AS day_number, op.finished_at,
           CASE WHEN op.task_type IN ('sell', 'sellReturn') THEN (op.result -> 'fiscalParams' ->> 'total')::numeric
           END AS total,
           CASE WHEN op.task_type IN ('openShift', 'closeShift') THEN (op.id - 2 * {n} - {n} / 50 + 1) / 2
                WHEN op.task_type = 'sell' THEN ((op.id / 2 - 1)::bigint * {s} / {n}) + 1
                ELSE (((op.id - 2 * {n}) * 50 - 1)::bigint * {s} / {n}) + 1 END AS shift_number_id
    FROM fiscal_fiscaloperation AS op WHERE op.task_type <> 'getShiftStatus'
) AS d
"""),
    ("card operations", """
INSERT INTO payments_cardoperation (id, op_id, kiosk_id, kind, state, transport, amount_kopecks, original_id,
    shift_id, reference, reason, rrn, auth_code, masked_pan, terminal_reference, bank_code, message, slip,
    raw_request, raw_response, resolution, resolve_attempts, manual_note, manual_report, created_at, sent_at,
    finished_at)
SELECT o, md5('c' || o)::uuid::text, kiosk_id, 'sale',
       CASE WHEN status = 'cancelled' THEN 'declined' ELSE 'approved' END,
       'kkm', (total * 100)::bigint, NULL::bigint, s, 'order:' || id,
       CASE WHEN status = 'cancelled' THEN 'declined' ELSE 'ok' END,
       lpad((o % 999999999999)::text, 12, '0'), lpad((o % 999999)::text, 6, '0'),
       '4276********' || lpad((o % 10000)::text, 4, '0'),
       md5('u' || o), CASE WHEN status = 'cancelled' THEN '51' ELSE '' END,
       CASE WHEN status = 'cancelled' THEN 'Отказ: недостаточно средств' ELSE '' END, repeat('s', 155),
       repeat('q', 180), repeat('r', 505), '', 0, '', '', at + interval '2 seconds', at + interval '2 seconds',
       at + interval '6 seconds'
FROM (""" + _ORDER.replace("{shift}", _SHIFT) + """) AS ord
UNION ALL
SELECT {n} + s, md5('t' || s)::uuid::text, kiosk_id, 'settlement', 'approved', 'kkm', 0, NULL::bigint, s, '', 'ok',
       '', '', '',
       '', '', '', repeat('s', 400), repeat('q', 80), repeat('r', 600), '', 0, '', '', opened_at + interval '13 hours',
       opened_at + interval '13 hours', opened_at + interval '13 hours 20 seconds'
FROM (""" + _SHIFT + """) AS sh WHERE NOT is_open
"""),
    ("orders", """
INSERT INTO nekassir_order (id, kiosk_id, number, business_date, seq, status, order_type, payment, phone,
    email_or_phone, total, request_body, body_hash, error_code, error_message, step, shift_id, sell_operation_id,
    annul_operation_id, card_sale_id, iiko_number, iiko_state, iiko_round, retry_at, checkout_attempts,
    marking_mode, created_at, updated_at)
SELECT id, kiosk_id, 'K' || lpad(kno::text, 2, '0') || '-' || lpad(seq::text, 3, '0'),
       (at AT TIME ZONE 'Europe/Moscow')::date, seq, status,
       CASE WHEN o % 3 = 0 THEN 'dine_in' ELSE 'takeaway' END, 'card', '', '', total,
       jsonb_build_object('id', id::text, 'total', total::text, 'payment', 'card', 'order_type', 'takeaway',
           'lines', jsonb_build_array(jsonb_build_object('product_id', '119a276c-e8e2-42a1-8c7c-107fe2819fe5',
               'name', 'Бургер «Классический»', 'price', total::text, 'quantity', '1', 'vat', 'vat22',
               'modifiers', '[]'::jsonb))),
       md5(id::text) || md5(o::text),
       CASE status WHEN 'cancelled' THEN 'card_declined' WHEN 'not_delivered' THEN 'not_delivered' ELSE '' END,
       CASE status WHEN 'cancelled' THEN 'Оплата не прошла. Деньги не списаны, чек аннулирован.'
                   WHEN 'not_delivered' THEN 'Заказ оплачен, но не передан на кухню.' ELSE '' END,
       'done', s, 2 * o, CASE WHEN status = 'cancelled' THEN 2 * {n} + o / 50 END, o,
       CASE WHEN status = 'completed' THEN (o % 9000 + 1)::text ELSE '' END,
       CASE WHEN status = 'completed' THEN 'Success' ELSE '' END, 1, NULL, 0, '',
       at, at + interval '9 seconds'
FROM (""" + _ORDER.replace("{shift}", _SHIFT) + """) AS ord
"""),
    ("order lines", """
INSERT INTO nekassir_orderline (id, order_id, position, product_id, size_id, name, receipt_name, price, quantity,
                                unit, vat, amount)
SELECT CASE WHEN p = 1 THEN o ELSE {n} + o / 2 END, md5('o' || o)::uuid, p,
       CASE WHEN p = 1 THEN '119a276c-e8e2-42a1-8c7c-107fe2819fe5'::uuid
            ELSE '35a13949-aa73-4d86-8c15-94a11ba9aaf4'::uuid END, NULL,
       CASE WHEN p = 1 THEN 'Бургер «Классический»' ELSE 'Морс клюквенный 0,4 л' END,
       CASE WHEN p = 1 THEN 'Бургер «Классический»' ELSE 'Морс клюквенный 0,4 л' END,
       price, 1, 'piece', 'vat22', price
FROM (SELECT o, p, CASE WHEN p = 2 THEN 120 WHEN o % 2 = 0 THEN 80 + (o % 17) * 37 ELSE 200 + (o % 17) * 37 END
             AS price FROM generate_series(1, {n}) AS o CROSS JOIN generate_series(1, 2) AS p
      WHERE p = 1 OR o % 2 = 0) AS l
"""),
    ("settlements", """
INSERT INTO payments_settlement (kiosk_id, shift_id, operation_id, state, attempts, slip, totals, message,
                                 slip_printed, created_at)
SELECT kiosk_id, s, {n} + s, 'ok', 1, repeat('s', 400), NULL, '', false, opened_at + interval '13 hours'
FROM (""" + _SHIFT + """) AS sh WHERE NOT is_open ORDER BY s
"""),
    ("iiko attempts", """
INSERT INTO nekassir_iikoattempt (id, order_id, iiko_order_id, as_delivery, round, state, correlation_id, request,
    responses, error_message, iiko_number, iiko_status, created_at, sent_at, finished_at)
SELECT o, id, md5('i' || o)::uuid::text, false, 1, CASE status WHEN 'completed' THEN 'success' ELSE 'error' END,
       md5('k' || o)::uuid::text,
       jsonb_build_object('id', md5('i' || o)::uuid::text, 'externalNumber', 'K' || lpad(kno::text, 2, '0') || '-'
           || lpad(seq::text, 3, '0'), 'orderTypeId', 'b3641f85-d498-49f7-97ac-b8c5d9393275',
           'items', jsonb_build_array(jsonb_build_object('type', 'Product', 'productId',
               '119a276c-e8e2-42a1-8c7c-107fe2819fe5', 'amount', 1, 'price', total)),
           'payments', jsonb_build_array(jsonb_build_object('paymentTypeKind', 'Card', 'sum', total,
               'paymentTypeId', 'e9772cf3-6f24-40be-a316-f3dd0eee6586', 'isProcessedExternally', true,
               'isFiscalizedExternally', true))),
       jsonb_build_array(jsonb_build_object('correlationId', md5('k' || o)::uuid::text, 'orderInfo',
           jsonb_build_object('id', md5('i' || o)::uuid::text, 'creationStatus',
               CASE status WHEN 'completed' THEN 'Success' ELSE 'Error' END, 'order',
               jsonb_build_object('number', o % 9000 + 1, 'status', 'New', 'sum', total,
                                  'comment', repeat('c', 300))))),
       CASE status WHEN 'completed' THEN '' ELSE 'iiko: CreationTimeout Creation timeout expired' END,
       CASE status WHEN 'completed' THEN (o % 9000 + 1)::text ELSE '' END,
       CASE status WHEN 'completed' THEN 'New' ELSE '' END, at + interval '6 seconds', at + interval '6 seconds',
       at + interval '8 seconds'
FROM (""" + _ORDER.replace("{shift}", _SHIFT) + """) AS ord WHERE status <> 'cancelled'
"""),
    ("journal events", """
INSERT INTO core_event (created_at, kiosk_id, action, message, data, user_id, object_ref)
SELECT created_at, kiosk_id, action, message, data, user_id, object_ref FROM (
    SELECT at + make_interval(secs => 1 + e * 3) AS created_at, kiosk_id,
           CASE WHEN status = 'cancelled' THEN (ARRAY['order.receipt.done', 'order.card.declined',
                     'order.cancelled'])[e + 1]
                WHEN status = 'not_delivered' THEN (ARRAY['order.receipt.done', 'order.card.approved',
                     'order.not_delivered'])[e + 1]
                ELSE (ARRAY['order.receipt.done', 'order.card.approved', 'order.completed'])[e + 1] END AS action,
           'K' || lpad(kno::text, 2, '0') || '-' || lpad(seq::text, 3, '0') || ': ' ||
               (ARRAY['Чек прихода ФД ' || o, 'Оплата одобрена, RRN ' || o, 'передан в iiko'])[e + 1] AS message,
           '{{}}'::jsonb AS data, NULL::integer AS user_id, 'order:' || id AS object_ref
    FROM (""" + _ORDER.replace("{shift}", _SHIFT) + """) AS ord CROSS JOIN generate_series(0, 2) AS e
    UNION ALL
    SELECT opened_at + make_interval(hours => 13 * r, secs => 30), kiosk_id,
           (ARRAY['fiscal.shift.opened', 'fiscal.shift.closed'])[r + 1], 'Смена №' || (day + 1), '{{}}'::jsonb,
           NULL, 'shift:' || s
    FROM (""" + _SHIFT + """) AS sh CROSS JOIN generate_series(0, 1) AS r WHERE r = 0 OR NOT is_open
    UNION ALL
    SELECT opened_at + interval '13 hours' - interval '1 minute', kiosk_id, 'panel.shift_close',
           'Закрытие смены вручную', '{{"job": "shift_close"}}'::jsonb, {uid}, 'shift:' || s
    FROM (""" + _SHIFT + """) AS sh WHERE NOT is_open AND s % 10 = 0
    UNION ALL
    SELECT opened_at + interval '2 hours', kiosk_id, 'fiscal.register.checked', 'ККТ в порядке',
           '{{"problems": [], "fn_warnings": [], "queue_blocked": false, "ofd_not_sent": 0}}'::jsonb, {uid},
           'kiosk:K' || lpad(kno::text, 2, '0')
    FROM (""" + _SHIFT + """) AS sh WHERE s % 7 = 0
) AS ev ORDER BY created_at
"""),  # noqa: S608 - formatted from integers only (see above)
    ("register totals of closed shifts", """
UPDATE fiscal_shift AS sh SET register_totals = jsonb_build_object('shift_totals', jsonb_build_object('shiftTotals',
        jsonb_build_object('receipts', jsonb_build_object(
            'sell', jsonb_build_object('sum', t.sells, 'count', t.sells_n),
            'sellReturn', jsonb_build_object('sum', t.returns, 'count', t.returns_n))))),
    receipts_count = t.sells_n + t.returns_n
FROM (SELECT shift_id, coalesce(sum(total) FILTER (WHERE doc_type = 'sell'), 0) AS sells,
             count(*) FILTER (WHERE doc_type = 'sell') AS sells_n,
             coalesce(sum(total) FILTER (WHERE doc_type = 'sellReturn'), 0) AS returns,
             count(*) FILTER (WHERE doc_type = 'sellReturn') AS returns_n
      FROM fiscal_fiscaldocument GROUP BY shift_id) AS t
WHERE t.shift_id = sh.id AND sh.state = 'closed'
"""),
]
