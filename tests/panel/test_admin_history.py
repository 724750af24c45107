"""The admin is for data fixes, not for rewriting history (issue 14, item 5).

What mirrors what devices did (fiscal documents and operations, shifts, corrections, card operations,
settlements, marking checks), the event journal and the device locks are read-only in the admin: their lists
and pages open, nothing is added, changed or deleted there. A device lock whose lease has run out may be
released by an admin action, journaled; a live one never. The admin's titles read as Russian: «Добавить
киоск», «Выберите смену для просмотра» — never «Добавить смена».
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.utils import timezone

from core.models import DeviceLock, Event, Kiosk
from fiscal.models import Correction, FiscalDocument, FiscalOperation, Shift
from marking.models import MarkingCheck
from payments.models import CardOperation, Settlement
from tests.panel_support import fake_completed_order, fake_shift

pytestmark = pytest.mark.django_db

# model label → (verbose_name, verbose_name_plural, the name after «Добавить» / «Выберите … для просмотра»)
NAMES = {
    "core.Kiosk": ("киоск", "киоски", "киоск"),
    "core.DeviceLock": ("блокировка устройства", "блокировки устройств", "блокировку устройства"),
    "core.Event": ("событие", "журнал событий", "событие"),
    "core.IikoConnection": ("подключение iiko", "подключения iiko", "подключение iiko"),
    "core.KioskToken": ("токен киоска", "токены киосков", "токен киоска"),
    "fiscal.FiscalOperation": ("операция ККТ", "журнал операций ККТ", "операцию ККТ"),
    "fiscal.Shift": ("смена", "смены", "смену"),
    "fiscal.FiscalDocument": ("фискальный документ", "фискальные документы", "фискальный документ"),
    "fiscal.Correction": ("чек коррекции", "чеки коррекции", "чек коррекции"),
    "payments.CardOperation": ("операция терминала", "операции терминалов", "операцию терминала"),
    "payments.Settlement": ("сверка итогов", "сверки итогов", "сверку итогов"),
    "marking.MarkedProduct": ("маркированный товар", "маркированные товары", "маркированный товар"),
    "marking.MarkingCheck": ("проверка кодов маркировки", "проверки кодов маркировки", "проверку кодов маркировки"),
    "nekassir.ReportDay": ("итоги дня для отчёта", "итоги дней для отчёта", "итоги дня для отчёта"),
    "nekassir.PickupCounter": ("счётчик номеров заказов", "счётчики номеров заказов", "счётчик номеров заказов"),
    "nekassir.Order": ("заказ", "заказы", "заказ"),
    "nekassir.OrderLine": ("позиция заказа", "позиции заказа", "позицию заказа"),
    "nekassir.OrderModifier": ("модификатор", "модификаторы", "модификатор"),
    "nekassir.OrderMark": ("код маркировки в заказе", "коды маркировки в заказах", "код маркировки в заказе"),
    "nekassir.IikoAttempt": ("попытка передачи в iiko", "попытки передачи в iiko", "попытку передачи в iiko"),
    "nekassir.PinAttempt": ("попытка ввода PIN", "попытки ввода PIN", "попытку ввода PIN"),
    "nekassir.Refund": ("возврат", "возвраты", "возврат"),
}
OUR_APPS = ("core", "fiscal", "payments", "iiko", "marking", "nekassir")
# Feminine names change after «Добавить»/«Выберите»: such a model is never addable in the admin, where Django's
# own «Добавить %s» would use the name as it stands (its Russian success messages are masculine too).
FEMININE = {label for label, (name, _plural, accusative) in NAMES.items() if name != accusative}
READ_ONLY = [FiscalDocument, FiscalOperation, Shift, Correction, CardOperation, Settlement, Event, DeviceLock,
             MarkingCheck]


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


@pytest.fixture
def history(db) -> dict:
    """One row of each read-only model."""
    kiosk = Kiosk.objects.create(code="K1", name="Киоск у входа")
    shift = fake_shift(kiosk)
    order = fake_completed_order(kiosk, shift)
    operation = FiscalOperation.objects.create(kiosk=kiosk, task_type="sellCorrection", state="done",
                                               fn_number=shift.fn_number)
    now = timezone.now()
    return {
        FiscalDocument: FiscalDocument.objects.get(operation=order.sell_operation),
        FiscalOperation: order.sell_operation,
        Shift: shift,
        Correction: Correction.objects.create(kiosk=kiosk, shift=shift, operation=operation, kind="sellCorrection",
                                              basis="self", settlement_date=now.date(), total=Decimal("10.00"),
                                              reason="недостача"),
        CardOperation: order.card_sale,
        Settlement: Settlement.objects.create(kiosk=kiosk, shift=shift, state="ok", attempts=1),
        Event: Event.objects.create(kiosk=kiosk, action="fiscal.shift.opened", message="Смена открыта"),
        DeviceLock: DeviceLock.objects.create(key="atol:K1", holder="host:1:1", purpose="sell",
                                              acquired_at=now, expires_at=now + timedelta(minutes=5)),
        MarkingCheck: MarkingCheck.objects.create(kiosk=kiosk, codes=["0104600000000000215abc"]),
    }


def _url(model, action: str, pk=None) -> str:
    opts = model._meta
    base = f"/admin/{opts.app_label}/{opts.model_name}/"
    return {"list": base, "add": f"{base}add/", "change": f"{base}{pk}/change/",
            "delete": f"{base}{pk}/delete/"}[action]


def test_every_model_is_named_in_russian_with_the_right_forms():
    ours = {m._meta.label: m for m in apps.get_models() if m._meta.app_label in OUR_APPS}
    assert set(ours) == set(NAMES), "a model without its Russian names here"
    for label, model in ours.items():
        name, plural, accusative = NAMES[label]
        assert (model._meta.verbose_name, model._meta.verbose_name_plural) == (name, plural), label
        registered = admin.site._registry.get(model)
        if registered is not None:
            assert registered.accusative_name() == accusative, label
        if label in FEMININE and registered is not None:
            assert not registered.has_add_permission(_request()), f"«Добавить {name}» in the admin ({label})"



def test_every_field_has_a_russian_name():
    """The admin's columns and labels: «Киоск», «Создана», never Django's «Kiosk», «Created at»."""
    english = [f"{m._meta.label}.{f.name}" for m in apps.get_models() if m._meta.app_label in OUR_APPS
               for f in m._meta.get_fields()
               if getattr(f, "concrete", False) and not f.auto_created and f.verbose_name == f.name.replace("_", " ")]
    assert english == []

def _request():
    request = type("Request", (), {})()
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    return request


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda m: m.__name__)
def test_history_opens_in_the_admin_but_is_never_added_changed_or_deleted(admin_client, history, model):
    row = history[model]
    listing = admin_client.get(_url(model, "list"))
    assert listing.status_code == 200
    page = listing.content.decode()
    accusative = NAMES[model._meta.label][2]
    assert f"Выберите {accusative} для просмотра" in page
    assert _url(model, "add") not in page  # no «Добавить …» button
    assert 'value="delete_selected"' not in page
    detail = admin_client.get(_url(model, "change", row.pk))
    assert detail.status_code == 200
    text = detail.content.decode()
    assert f"Просмотреть {accusative}" in text
    assert 'name="_save"' not in text and _url(model, "delete", row.pk) not in text
    before = model.objects.count()
    assert admin_client.get(_url(model, "add")).status_code == 403
    assert admin_client.post(_url(model, "add"), {}).status_code == 403
    assert admin_client.post(_url(model, "change", row.pk), {}).status_code == 403
    assert admin_client.get(_url(model, "delete", row.pk)).status_code == 403
    assert admin_client.post(_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    bulk = admin_client.post(_url(model, "list"), {"action": "delete_selected", "_selected_action": [row.pk],
                                                   "post": "yes"})
    assert bulk.status_code in (200, 302)
    assert model.objects.count() == before and model.objects.filter(pk=row.pk).exists()


def test_an_expired_lock_is_released_by_an_admin_action_and_journaled(admin_client, history):
    lock = history[DeviceLock]
    DeviceLock.objects.filter(pk=lock.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = admin_client.post(_url(DeviceLock, "list"), {"action": "release_expired",
                                                          "_selected_action": [lock.pk]}, follow=True)
    assert answer.status_code == 200
    lock.refresh_from_db()
    assert (lock.holder, lock.purpose, lock.expires_at) == ("", "", None)
    event = Event.objects.get(action="core.lock.released")
    assert event.user.username == "root" and event.data["holder"] == "host:1:1" and event.data["purpose"] == "sell"
    assert "atol:K1" in event.message and "Освобождена" in answer.content.decode()


def test_a_live_lock_is_never_released(admin_client, history):
    lock = history[DeviceLock]
    answer = admin_client.post(_url(DeviceLock, "list"), {"action": "release_expired",
                                                          "_selected_action": [lock.pk]}, follow=True)
    page = answer.content.decode()
    lock.refresh_from_db()
    assert lock.holder == "host:1:1" and lock.expires_at is not None
    assert "не освобождена" in page and "ещё действует" in page
    assert "Кем занята" in page and "Срок истекает" in page and "Holder" not in page
    assert not Event.objects.filter(action="core.lock.released").exists()


def test_data_fixes_stay_possible_and_read_as_russian(admin_client):
    for url, title in (("/admin/core/kiosk/add/", "Добавить киоск"),
                       ("/admin/core/iikoconnection/add/", "Добавить подключение iiko"),
                       ("/admin/marking/markedproduct/add/", "Добавить маркированный товар"),
                       ("/admin/auth/user/add/", "Добавить пользователь"),
                       ("/admin/auth/group/add/", "Добавить группу")):
        answer = admin_client.get(url)
        assert answer.status_code == 200, url
        assert f"<title>{title} |" in answer.content.decode(), url
    groups = admin_client.get("/admin/auth/group/").content.decode()
    assert "Добавить группу" in groups and "Выберите группу для изменения" in groups
    assert "Добавить группа" not in groups
    group = Group.objects.create(name="Менеджеры")
    assert "Изменить группу" in admin_client.get(f"/admin/auth/group/{group.pk}/change/").content.decode()
    assert "Выберите киоск для изменения" in admin_client.get("/admin/core/kiosk/").content.decode()


def test_no_admin_page_says_dobavit_smena(admin_client, history):
    seen = []
    for model in admin.site._registry:
        seen.append(admin_client.get(_url(model, "list")).content.decode())
    seen.append(admin_client.get("/admin/").content.decode())
    text = "\n".join(seen)
    assert "Добавить смена" not in text and "смена для" not in text
    for label in FEMININE:
        name = NAMES[label][0]
        assert f"Добавить {name}" not in text and f"Выберите {name} " not in text, label
