"""Card terminals: every terminal call (CardOperation) and every settlement (сверка итогов).

A CardOperation row is saved with our operation id *before* the terminal is called (KKM Server's
IdCommand, DualConnector's ECR transaction id) and keeps the raw exchange. Nothing is deleted.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from core.models import Kiosk
from fiscal.models import Shift
from payments.acquiring import kopecks_to_rubles


class CardOperation(models.Model):
    class Kind(models.TextChoices):
        SALE = "sale", "оплата"
        CANCEL = "cancel", "отмена"
        REFUND = "refund", "возврат"
        REVERSAL = "reversal", "аварийная отмена"
        SETTLEMENT = "settlement", "сверка итогов"
        CHECK = "check", "проверка связи"
        REPORT = "report", "отчёт терминала"

    class State(models.TextChoices):
        PENDING = "pending", "сохранено, не отправлено"
        SENT = "sent", "отправлено, ждём ответ"
        UNKNOWN = "unknown", "результат неизвестен"
        APPROVED = "approved", "одобрено"
        DECLINED = "declined", "отказ"
        REVERSED = "reversed", "отменено аварийно"

    UNRESOLVED = (State.PENDING, State.SENT, State.UNKNOWN)
    MONEY_KINDS = (Kind.SALE, Kind.CANCEL, Kind.REFUND, Kind.REVERSAL)

    op_id = models.CharField("наш id операции", max_length=40, unique=True)
    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="card_operations")
    kind = models.CharField("операция", max_length=16, choices=Kind.choices)
    state = models.CharField("состояние", max_length=16, choices=State.choices, default=State.PENDING)
    transport = models.CharField("подключение", max_length=20)
    amount_kopecks = models.PositiveBigIntegerField("сумма, коп.", default=0)
    original = models.ForeignKey(
        "self", verbose_name="исходная операция", null=True, blank=True, on_delete=models.PROTECT,
        related_name="follow_ups",
        help_text="Для отмены, возврата, аварийной отмены: исходная оплата.",
    )
    shift = models.ForeignKey(
        Shift, verbose_name="смена", null=True, blank=True, on_delete=models.PROTECT, related_name="card_operations",
        help_text="Фискальная смена, открытая во время операции (для сверки).",
    )
    reference = models.CharField("к чему относится", max_length=100, blank=True, db_index=True)
    reason = models.CharField("причина", max_length=32, blank=True)
    rrn = models.CharField("RRN", max_length=32, blank=True, db_index=True)
    auth_code = models.CharField("код авторизации", max_length=16, blank=True)
    masked_pan = models.CharField("карта", max_length=32, blank=True)
    terminal_reference = models.CharField("ссылка терминала", max_length=255, blank=True)
    bank_code = models.CharField("код банка", max_length=16, blank=True)
    message = models.TextField("сообщение", blank=True)
    slip = models.TextField("слип", blank=True)
    raw_request = models.TextField("запрос к терминалу", blank=True)
    raw_response = models.TextField("ответ терминала", blank=True)
    resolution = models.CharField("как разрешено", max_length=255, blank=True)
    created_at = models.DateTimeField("создана", auto_now_add=True)
    sent_at = models.DateTimeField("отправлена", null=True, blank=True)
    finished_at = models.DateTimeField("завершена", null=True, blank=True)
    # Recovery of an unknown operation: attempts so far and when it tries next (backoff).
    resolve_attempts = models.PositiveIntegerField("попыток автоматического разрешения", default=0)
    next_resolve_at = models.DateTimeField("следующая попытка разрешения", null=True, blank=True)
    # A manager's resolution by hand (nekassir.card_resolution): who, why, and the terminal's report
    # taken at a «не списаны» — the evidence the operation was not charged.
    resolved_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT,
        related_name="resolved_card_operations", verbose_name="разрешено вручную кем",
    )
    manual_note = models.TextField("причина ручного разрешения", blank=True)
    manual_report = models.TextField("отчёт терминала при ручном разрешении", blank=True)

    class Meta:
        verbose_name = "операция терминала"
        verbose_name_plural = "операции терминалов"
        ordering = ["-id"]
        indexes = [models.Index(fields=["kiosk", "state"], name="card_op_kiosk_state")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.op_id} ({self.get_state_display()})"

    @property
    def unresolved(self) -> bool:
        return self.state in self.UNRESOLVED

    @property
    def amount(self) -> Decimal:
        return kopecks_to_rubles(self.amount_kopecks)


class Settlement(models.Model):
    """One settlement (сверка итогов) attempt sequence for a kiosk, usually at a shift's close."""

    class State(models.TextChoices):
        OK = "ok", "выполнена"
        FAILED = "failed", "не выполнена"
        SKIPPED = "skipped", "пропущена"

    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="settlements")
    shift = models.ForeignKey(Shift, verbose_name="смена", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="settlements")
    operation = models.ForeignKey(
        CardOperation, verbose_name="операция терминала", null=True, blank=True, on_delete=models.PROTECT,
        related_name="settlements",
        help_text="Последняя попытка.",
    )
    state = models.CharField("результат", max_length=16, choices=State.choices)
    attempts = models.PositiveSmallIntegerField("попыток", default=0)
    slip = models.TextField("слип сверки", blank=True)
    totals = models.JSONField("итоги", null=True, blank=True)
    message = models.TextField("сообщение", blank=True)
    slip_printed = models.BooleanField("слип напечатан на ККТ", default=False)
    created_at = models.DateTimeField("время", auto_now_add=True)

    class Meta:
        verbose_name = "сверка итогов"
        verbose_name_plural = "сверки итогов"
        ordering = ["-id"]
        indexes = [models.Index(fields=["created_at"], name="settlement_created")]  # the last week's, venue page

    def __str__(self) -> str:
        return f"{self.kiosk.code}: сверка {self.get_state_display()} ({self.created_at:%d.%m.%Y %H:%M})"

    def as_json(self) -> dict:
        return {
            "id": self.pk,
            "state": self.state,
            "attempts": self.attempts,
            "message": self.message,
            "slip": self.slip,
            "operation": self.operation.op_id if self.operation is not None else None,
        }
