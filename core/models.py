"""The bottom floor's models: the kiosks and the device settings every room reads (the register, the card
terminal, the venue's iiko account), their API tokens, the device locks and the event journal.

Nothing here knows orders, receipts or payments: the rooms above point down at these rows, never back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.contrib.auth.hashers import check_password, make_password
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from core.addresses import without_credentials
from core.fields import CloudURLField, LanURLField


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
    atol_url = LanURLField("адрес ATOL Web Server", blank=True, help_text="Например http://192.168.1.21:16732")
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
    # Requisites of an automatic device (FFD 1.2 tags 1036, 1009, 1187): every receipt carries them
    # (``receipt_requisites``). Empty ones are read from the register's registration before the kiosk's first
    # receipt, and all are read again after an FN change (``fiscal.requisites``).
    machine_number = models.CharField(
        "номер автомата (тег 1036)", max_length=20, blank=True,
        help_text="Номер автоматического устройства для расчётов из регистрации ККТ. Пусто — прочитать из ККТ.",
    )
    payments_address = models.CharField(
        "адрес расчётов (тег 1009)", max_length=256, blank=True,
        help_text="Как в регистрации ККТ. Пусто — прочитать из ККТ перед первым чеком.",
    )
    payments_place = models.CharField(
        "место расчётов (тег 1187)", max_length=256, blank=True,
        help_text="Например «Фудкорт, киоск у входа». Пусто — прочитать из ККТ перед первым чеком.",
    )
    requisites_fn_number = models.CharField(
        "ФН, по регистрации которого прочитаны реквизиты", max_length=32, blank=True, editable=False
    )

    # --- card terminal ---------------------------------------------------------------------------
    terminal_transport = models.CharField(
        "подключение терминала", max_length=20, choices=TerminalTransport.choices, blank=True, default=""
    )
    terminal_kind = models.CharField(
        "вид терминала", max_length=20, choices=TerminalKind.choices, default=TerminalKind.SBERBANK
    )
    kkm_url = LanURLField("адрес KKM Server", blank=True, help_text="Например http://192.168.1.21:5893")
    kkm_device_number = models.PositiveIntegerField(
        "номер устройства в KKM Server", default=0, help_text="0 — первый свободный терминал."
    )
    kkm_username = models.CharField("пользователь KKM Server", max_length=64, blank=True)
    kkm_password = models.CharField("пароль KKM Server", max_length=128, blank=True)
    dc_url = LanURLField("адрес сервиса DualConnector", blank=True, help_text="Например http://127.0.0.1:9015/")
    dc_operation_codes = models.JSONField(
        "коды операций DualConnector", default=dict, blank=True,
        help_text='Переопределение кодов, например {"emergency_cancel": 56}. Пусто — коды по умолчанию.',
    )
    print_slips = models.BooleanField("печатать банковские слипы на ККТ", default=True)
    terminal_ready = models.BooleanField("терминал готов", default=True, editable=False)
    terminal_problem = models.CharField("проблема терминала", max_length=255, blank=True, editable=False)

    # --- iiko (issue 4): where this kiosk's orders go -------------------------------------------
    iiko = models.ForeignKey(
        "IikoConnection", verbose_name="подключение iiko", null=True, blank=True,
        on_delete=models.PROTECT, related_name="kiosks",
    )
    iiko_organization_id = models.UUIDField("организация iiko (id)", null=True, blank=True)
    iiko_terminal_group_id = models.UUIDField("группа терминалов iiko (id)", null=True, blank=True)
    iiko_payment_type_id = models.UUIDField(
        "тип оплаты «карта» в iiko (id)", null=True, blank=True,
        help_text="Тип оплаты вида Card, проводится и фискализируется внешне (киоском).",
    )
    iiko_order_type_takeaway_id = models.UUIDField("тип заказа «с собой» (id)", null=True, blank=True)
    iiko_order_type_dine_in_id = models.UUIDField("тип заказа «в зале» (id)", null=True, blank=True)
    iiko_send_as_delivery = models.BooleanField(
        "отправлять как доставку-самовывоз", default=False,
        help_text="Заказы уходят в deliveries/create, и киоск обязан передать телефон гостя.",
    )
    iiko_order_type_pickup_id = models.UUIDField(
        "тип заказа «самовывоз» (id)", null=True, blank=True, help_text="Для режима доставки-самовывоза."
    )

    service_pin_hash = models.CharField(
        "PIN сервисного меню", max_length=128, blank=True, editable=False,
        help_text="Хранится только хеш; задаётся командой или в админке.",
    )

    created_at = models.DateTimeField("создан", auto_now_add=True)

    SECRET_FIELDS = ("atol_password", "kkm_password")

    class Meta:
        verbose_name = "киоск"
        verbose_name_plural = "киоски"
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"

    def __repr__(self) -> str:
        return f"<Kiosk {self.code}>"

    def set_service_pin(self, pin: str) -> None:
        """The PIN that unlocks the kiosk's embedded service menu (stored hashed, saved at once)."""
        self.service_pin_hash = make_password(pin)
        Kiosk.objects.filter(pk=self.pk).update(service_pin_hash=self.service_pin_hash)

    def check_service_pin(self, pin: str) -> bool:
        return bool(self.service_pin_hash) and check_password(pin, self.service_pin_hash)

    # Kiosk field -> the receipt task's top-level field (PROTOCOLS.md §1, "Receipts of an automatic device").
    REQUISITE_FIELDS = {"machine_number": "machineNumber", "payments_address": "paymentsAddress",
                        "payments_place": "paymentsPlace"}

    @property
    def receipt_requisites(self) -> dict[str, str]:
        """``machineNumber``, ``paymentsAddress``, ``paymentsPlace`` for a receipt task: those known (a register
        registered for a cashier has no machine number, and an empty string is not a value to send)."""
        values = {wire: getattr(self, name) for name, wire in self.REQUISITE_FIELDS.items()}
        return {wire: value for wire, value in values.items() if value}

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
    See ``core.locks``.
    """

    key = models.CharField("ключ", max_length=255, unique=True)
    holder = models.CharField("кем занята", max_length=255, blank=True)
    purpose = models.CharField("для чего", max_length=255, blank=True)
    acquired_at = models.DateTimeField("занята", null=True, blank=True)
    expires_at = models.DateTimeField("срок истекает", null=True, blank=True)

    class Meta:
        verbose_name = "блокировка устройства"
        verbose_name_plural = "блокировки устройств"

    def __str__(self) -> str:
        # A key made before keys were cleaned may carry an address's password (issue 16): never shown.
        return f"{without_credentials(self.key, mark='***')}: {self.holder or 'свободно'}"


class Event(models.Model):
    """The event journal: every status change and every manual action, with who did it."""

    created_at = models.DateTimeField("время", auto_now_add=True, db_index=True)
    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="events")
    action = models.CharField("действие", max_length=64, help_text="Например fiscal.shift.opened")
    message = models.TextField("сообщение", blank=True)
    data = models.JSONField("данные", default=dict, blank=True)
    user = models.ForeignKey(
        "auth.User", verbose_name="пользователь", null=True, blank=True, on_delete=models.PROTECT,
        related_name="nekassir_events"
    )
    object_ref = models.CharField("объект", max_length=100, blank=True, db_index=True, help_text="shift:12, order:…")

    class Meta:
        verbose_name = "событие"
        verbose_name_plural = "журнал событий"
        ordering = ["-created_at", "-id"]
        # Partial indexes over the few rows the panel looks for among millions of checkout events.
        indexes = [
            # The last register check of each kiosk (the venue page); "fiscal.register.checked" = panel.jobs.CHECKED.
            models.Index(fields=["kiosk", "id"], condition=models.Q(action="fiscal.register.checked"),
                         name="event_register_check"),
            # The journal of manual actions, newest first (panel.views.venue.manual_actions).
            models.Index(fields=["id"], condition=models.Q(user__isnull=False) | models.Q(action__startswith="panel."),
                         name="event_manual_action"),
            # Jobs started from the panel in the last minutes (panel.jobs.running_jobs).
            models.Index(fields=["created_at"], condition=models.Q(action__startswith="panel."),
                         name="event_panel_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action}"


# --- iiko connection -----------------------------------------------------------------------------


class IikoConnection(models.Model):
    """One iiko Cloud API account of the venue, shared by its kiosks (``Kiosk.iiko``).

    v1 needs ``api_login``; v2 needs ``app_id`` + ``client_secret`` + ``api_key`` (PROTOCOLS.md §3).
    The secrets are never shown back: ``__str__``/``repr`` name the connection only.
    """

    name = models.CharField("название", max_length=100, default="iiko")
    base_url = CloudURLField("адрес iiko Cloud API", default="https://api-ru.iiko.services")
    api_login = models.CharField("apiLogin (v1)", max_length=128, blank=True)
    app_id = models.CharField("appId (v2)", max_length=64, blank=True)
    client_secret = models.CharField("clientSecret (v2)", max_length=256, blank=True)
    api_key = models.CharField("apiKey (v2)", max_length=256, blank=True)
    created_at = models.DateTimeField("создано", auto_now_add=True)

    SECRET_FIELDS = ("api_login", "client_secret", "api_key")

    class Meta:
        verbose_name = "подключение iiko"
        verbose_name_plural = "подключения iiko"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<IikoConnection {self.pk}>"


# --- kiosk API tokens ------------------------------------------------------------------------------


def _token_digest(token: str) -> str:
    # A plain SHA-256 is enough: the token is 256 random bits, so there is nothing to brute-force
    # and no need for a slow password hash (which would cost every API request).
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_digest(token: str) -> str | None:
    """The stored digest of a presented token, or None when it cannot be one of ours (empty, too long, not
    ASCII): such a token is refused without a database lookup."""
    if not token or len(token) > KioskToken.MAX_PLAINTEXT_LENGTH or not token.isascii():
        return None
    return _token_digest(token)


class KioskToken(models.Model):
    """A kiosk's bearer token for the kiosk API, stored as its SHA-256 only.

    The plaintext exists once, in the return value of ``issue``; the row keeps a short ``prefix``
    so staff can tell tokens apart without seeing them.
    """

    PLAINTEXT_PREFIX = "nkk_"
    MAX_PLAINTEXT_LENGTH = 100

    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="tokens")
    prefix = models.CharField("начало токена", max_length=12, editable=False)
    token_hash = models.CharField("хеш токена", max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField("выпущен", auto_now_add=True)
    revoked_at = models.DateTimeField("отозван", null=True, blank=True)

    class Meta:
        verbose_name = "токен киоска"
        verbose_name_plural = "токены киосков"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.kiosk_id})"

    def __repr__(self) -> str:
        return f"<KioskToken {self.prefix}…>"

    @classmethod
    def issue(cls, kiosk: Kiosk) -> str:
        """Create a token for ``kiosk``; returns the plaintext, which is not stored anywhere."""
        token = cls.PLAINTEXT_PREFIX + secrets.token_urlsafe(32)
        cls.objects.create(kiosk=kiosk, prefix=token[:10], token_hash=_token_digest(token))
        return token

    @classmethod
    def authenticate(cls, token: str) -> Kiosk | None:
        """The active kiosk whose live token this is, or None."""
        digest = token_digest(token)
        return cls.authenticate_digest(digest) if digest is not None else None

    @classmethod
    def authenticate_digest(cls, digest: str) -> Kiosk | None:
        """The active kiosk whose live token has this digest (``token_digest``), or None."""
        row = (
            cls.objects.select_related("kiosk")
            .filter(token_hash=digest, revoked_at__isnull=True, kiosk__active=True)
            .first()
        )
        # The lookup is by digest, so timing reveals nothing about the token; compare_digest
        # keeps the final check constant-time all the same.
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return row.kiosk

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


def issue_token(kiosk: Kiosk) -> str:
    """A new API token for ``kiosk`` (plaintext, shown once)."""
    return KioskToken.issue(kiosk)


def authenticate_token(token: str) -> Kiosk | None:
    return KioskToken.authenticate(token)
