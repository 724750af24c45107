"""The venue core: kiosks and the devices they are wired to."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models


class TaxationType(models.TextChoices):
    OSN = "osn", "ОСН"
    USN_INCOME = "usnIncome", "УСН доход"
    USN_INCOME_OUTCOME = "usnIncomeOutcome", "УСН доход минус расход"
    ESN = "esn", "ЕСХН"
    PATENT = "patent", "Патент"


class TerminalTransport(models.TextChoices):
    NONE = "", "Нет терминала"
    KKM_SERVER = "kkm", "KKM Server"
    DUALCONNECTOR = "dualconnector", "DualConnector (собственный HTTP/XML сервис)"


class TerminalKind(models.TextChoices):
    SBERBANK = "sberbank", "Сбербанк"
    DUALCONNECTOR = "dualconnector", "INPAS DualConnector"


class Kiosk(models.Model):
    """One self-service kiosk: its fiscal register (ATOL Web Server) and card terminal.

    Passwords are stored because the devices need them, but are never shown: the admin form
    never renders them back, ``__str__``/``repr`` leave them out, and log lines name the kiosk code only.
    """

    code = models.CharField(
        "код", max_length=16, unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9_-]+$", "Только латинские буквы, цифры, «-» и «_».")],
        help_text="Короткий код киоска, например K1. Используется в командах и префиксе номера заказа.",
    )
    name = models.CharField("название", max_length=100)
    active = models.BooleanField("активен", default=True)

    # --- ATOL fiscal register through ATOL Web Server ------------------------------------------
    has_register = models.BooleanField("есть свой ККТ АТОЛ", default=True)
    atol_url = models.URLField("адрес ATOL Web Server", blank=True, help_text="Например http://192.168.1.21:16732")
    atol_device_id = models.CharField(
        "deviceID в ATOL Web Server", max_length=64, blank=True,
        help_text="Пусто — устройство по умолчанию веб-сервера.",
    )
    atol_username = models.CharField("пользователь веб-запросов", max_length=64, blank=True)
    atol_password = models.CharField("пароль веб-запросов", max_length=128, blank=True)
    taxation_type = models.CharField(
        "система налогообложения", max_length=20, choices=TaxationType.choices, default=TaxationType.OSN
    )
    operator_name = models.CharField(
        "кассир (необязательно)", max_length=64, blank=True,
        help_text="Для ККТ, зарегистрированной для автоматического устройства, обычно пусто.",
    )
    operator_inn = models.CharField(
        "ИНН кассира (необязательно)", max_length=12, blank=True,
        validators=[RegexValidator(r"^(\d{10}|\d{12})$", "ИНН — 10 или 12 цифр.")],
    )
    registration_info = models.JSONField("регистрационные данные ККТ", default=dict, blank=True, editable=False)
    register_ready = models.BooleanField("ККТ готова", default=True, editable=False)
    register_problem = models.CharField("проблема ККТ", max_length=255, blank=True, editable=False)
    fn_number = models.CharField("номер ФН (последний известный)", max_length=32, blank=True, editable=False)

    # --- card terminal ---------------------------------------------------------------------------
    terminal_transport = models.CharField(
        "подключение терминала", max_length=20, choices=TerminalTransport.choices, blank=True, default=""
    )
    terminal_kind = models.CharField(
        "вид терминала", max_length=20, choices=TerminalKind.choices, default=TerminalKind.SBERBANK
    )
    kkm_url = models.URLField("адрес KKM Server", blank=True, help_text="Например http://192.168.1.21:5893")
    kkm_device_number = models.PositiveIntegerField(
        "номер устройства в KKM Server", default=0, help_text="0 — первый свободный терминал."
    )
    kkm_username = models.CharField("пользователь KKM Server", max_length=64, blank=True)
    kkm_password = models.CharField("пароль KKM Server", max_length=128, blank=True)
    dc_url = models.URLField("адрес сервиса DualConnector", blank=True, help_text="Например http://127.0.0.1:9015/")
    dc_operation_codes = models.JSONField(
        "коды операций DualConnector", default=dict, blank=True,
        help_text='Переопределение кодов, например {"emergency_cancel": 56}. Пусто — коды по умолчанию.',
    )
    print_slips = models.BooleanField("печатать банковские слипы на ККТ", default=True)
    terminal_ready = models.BooleanField("терминал готов", default=True, editable=False)
    terminal_problem = models.CharField("проблема терминала", max_length=255, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)

    SECRET_FIELDS = ("atol_password", "kkm_password")

    class Meta:
        verbose_name = "киоск"
        verbose_name_plural = "киоски"
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"

    def __repr__(self) -> str:
        return f"<Kiosk {self.code}>"

    @property
    def atol_operator(self) -> dict[str, str] | None:
        """The ``operator`` block of ATOL tasks, or None for a register of an automatic device."""
        if not self.operator_name:
            return None
        operator = {"name": self.operator_name}
        if self.operator_inn:
            operator["vatin"] = self.operator_inn
        return operator


class DeviceLock(models.Model):
    """A lease on one device (fiscal register or card terminal), shared by every process and machine.

    Claimed and released by compare-and-set updates, which work the same on SQLite and PostgreSQL.
    See ``nekassir.locks``.
    """

    key = models.CharField(max_length=255, unique=True)
    holder = models.CharField(max_length=255, blank=True)
    purpose = models.CharField(max_length=255, blank=True)
    acquired_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "блокировка устройства"
        verbose_name_plural = "блокировки устройств"

    def __str__(self) -> str:
        return f"{self.key}: {self.holder or 'свободно'}"


class Event(models.Model):
    """The event journal: every status change and every manual action, with who did it."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kiosk = models.ForeignKey(Kiosk, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    action = models.CharField("действие", max_length=64, help_text="Например fiscal.shift.opened")
    message = models.TextField("сообщение", blank=True)
    data = models.JSONField(default=dict, blank=True)
    user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="nekassir_events"
    )
    object_ref = models.CharField(max_length=100, blank=True, db_index=True, help_text="shift:12, order:…")

    class Meta:
        verbose_name = "событие"
        verbose_name_plural = "журнал событий"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action}"
