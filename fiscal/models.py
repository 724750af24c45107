"""Fiscal registers: every task sent to ATOL Web Server, the shifts and the fiscal documents.

Keys survive a fiscal-storage (FN) replacement, which restarts shift and document numbers:
a shift is (kiosk, FN number, shift number), a document is (FN number, FD number).
Nothing here is ever deleted.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from core.fields import ExactJSONField
from core.models import Event, Kiosk
from core.money import rub


class FiscalOperation(models.Model):
    """The journal of device calls: one row per request sent to a register, saved before sending.

    ``uuid`` is the ATOL task uuid. A row left ``pending``/``sent``/``unknown`` is resolved by
    polling that uuid (and re-POSTing the same uuid if the server never saw it), never re-sent
    under a new one.
    """

    class State(models.TextChoices):
        PENDING = "pending", "сохранено, не отправлено"
        SENT = "sent", "отправлено, ждём результат"
        UNKNOWN = "unknown", "результат неизвестен"
        DONE = "done", "выполнено"
        FAILED = "failed", "ошибка"

    UNRESOLVED = (State.PENDING, State.SENT, State.UNKNOWN)

    uuid = models.UUIDField("uuid задания ATOL", default=uuid.uuid4, unique=True, editable=False)
    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="fiscal_operations")
    task_type = models.CharField("задание", max_length=32)
    request = ExactJSONField("запрос", default=list)
    state = models.CharField("состояние", max_length=16, choices=State.choices, default=State.PENDING)
    reference = models.CharField("к чему относится", max_length=100, blank=True, db_index=True)
    result = models.JSONField("результат", null=True, blank=True)
    raw_answer = models.TextField("ответ сервера", blank=True)
    error_code = models.IntegerField("код ошибки", null=True, blank=True)
    error_kind = models.CharField("вид ошибки", max_length=32, blank=True)
    error_message = models.TextField("ошибка", blank=True)
    fn_number = models.CharField("ФН", max_length=32, blank=True)
    fd_number = models.PositiveIntegerField("ФД", null=True, blank=True)
    fpd = models.CharField("ФПД", max_length=32, blank=True)
    receipt_number = models.PositiveIntegerField("номер чека за смену", null=True, blank=True)
    shift_number = models.PositiveIntegerField("смена", null=True, blank=True)
    not_printed = models.BooleanField("не напечатан", default=False)
    attempts = models.PositiveSmallIntegerField("попыток отправки", default=0)
    created_at = models.DateTimeField("создана", auto_now_add=True)
    sent_at = models.DateTimeField("отправлена", null=True, blank=True)
    finished_at = models.DateTimeField("завершена", null=True, blank=True)

    class Meta:
        verbose_name = "операция ККТ"
        verbose_name_plural = "журнал операций ККТ"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["kiosk", "state"], name="fiscal_op_kiosk_state"),
        ]

    def __str__(self) -> str:
        return f"{self.task_type} {self.uuid} ({self.get_state_display()})"

    @property
    def unresolved(self) -> bool:
        return self.state in self.UNRESOLVED


class Shift(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "открыта"
        CLOSED = "closed", "закрыта"

    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="shifts")
    fn_number = models.CharField("ФН", max_length=32)
    number = models.PositiveIntegerField("номер смены")
    state = models.CharField("состояние", max_length=16, choices=State.choices, default=State.OPEN)
    opened_at = models.DateTimeField("открыта", null=True, blank=True)
    closed_at = models.DateTimeField("закрыта", null=True, blank=True)
    expires_at = models.DateTimeField("истекает (по ККТ)", null=True, blank=True)
    receipts_count = models.PositiveIntegerField("чеков за смену (по отчёту)", null=True, blank=True)
    register_totals = models.JSONField("счётчики ККТ при закрытии", null=True, blank=True)
    reconciled = models.BooleanField("сверено", null=True, blank=True)
    reconciliation_note = models.TextField("расхождения", blank=True)
    close_requested_at = models.DateTimeField("автозакрытие запрошено", null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "смена"
        verbose_name_plural = "смены"
        ordering = ["kiosk", "-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["kiosk", "fn_number", "number"], name="shift_unique_per_fn"),
        ]
        permissions = [
            ("manage_shift", "Может открывать и закрывать смены"),
            ("print_xreport", "Может печатать X-отчёт"),
            ("print_copy", "Может печатать копии документов"),
            # «Проверить ККТ» and «Проверить связь»: device calls on a kiosk, so not for every login.
            ("check_device", "Может проверять ККТ и связь с устройствами киоска"),
        ]
        indexes = [
            models.Index(fields=["kiosk", "state"], name="shift_kiosk_state"),
            models.Index(fields=["kiosk", "-opened_at", "-id"], name="shift_kiosk_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.kiosk.code}: смена №{self.number} (ФН {self.fn_number})"

    @property
    def is_open(self) -> bool:
        return self.state == self.State.OPEN

    @classmethod
    def current(cls, kiosk) -> Shift | None:
        """The kiosk's shift open now, as we last saw it (card operations are reconciled with it)."""
        return cls.objects.filter(kiosk=kiosk, state=cls.State.OPEN).order_by("-opened_at", "-id").first()


class FiscalDocument(models.Model):
    """A document the register made and stored in its FN (FD number + fiscal sign)."""

    class Type(models.TextChoices):
        OPEN_SHIFT = "openShift", "отчёт об открытии смены"
        CLOSE_SHIFT = "closeShift", "отчёт о закрытии смены"
        SELL = "sell", "чек прихода"
        SELL_RETURN = "sellReturn", "чек возврата прихода"
        SELL_CORRECTION = "sellCorrection", "чек коррекции прихода"
        SELL_RETURN_CORRECTION = "sellReturnCorrection", "чек коррекции возврата прихода"
        BUY = "buy", "чек расхода"
        BUY_RETURN = "buyReturn", "чек возврата расхода"

    fn_number = models.CharField("ФН", max_length=32)
    fd_number = models.PositiveIntegerField("ФД")
    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="fiscal_documents")
    shift = models.ForeignKey(Shift, verbose_name="смена", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="documents")
    operation = models.OneToOneField(
        FiscalOperation, verbose_name="операция ККТ", null=True, blank=True, on_delete=models.PROTECT,
        related_name="document"
    )
    doc_type = models.CharField("вид", max_length=32, choices=Type.choices)
    fpd = models.CharField("ФПД", max_length=32, blank=True)
    receipt_number = models.PositiveIntegerField("номер чека за смену", null=True, blank=True)
    shift_number = models.PositiveIntegerField("смена", null=True, blank=True)
    total = models.DecimalField("сумма", max_digits=12, decimal_places=2, null=True, blank=True)
    registered_at = models.DateTimeField("дата и время документа", null=True, blank=True)
    printed = models.BooleanField("напечатан", default=True)
    registration_number = models.CharField("РН ККТ", max_length=32, blank=True)
    fns_url = models.CharField("адрес сайта ФНС", max_length=100, blank=True)

    class Meta:
        verbose_name = "фискальный документ"
        verbose_name_plural = "фискальные документы"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["fn_number", "fd_number"], name="fiscal_document_unique_per_fn"),
        ]
        # The venue page counts the documents not printed: a few rows of millions.
        indexes = [models.Index(fields=["kiosk"], condition=models.Q(printed=False), name="fiscal_doc_not_printed")]

    def __str__(self) -> str:
        return f"{self.get_doc_type_display()} ФД {self.fd_number} (ФН {self.fn_number})"

    # FFD tag 1054 "признак расчёта" as the FNS QR code writes it (n=).
    _QR_OPERATION = {"sell": 1, "sellReturn": 2, "buy": 3, "buyReturn": 4}

    @property
    def qr(self) -> str:
        """The receipt's QR code string, the FNS format that the printed receipt carries."""
        if self.doc_type not in self._QR_OPERATION or self.registered_at is None or self.total is None:
            return ""
        when = timezone.localtime(self.registered_at).strftime("%Y%m%dT%H%M")
        return (f"t={when}&s={self.total:.2f}&fn={self.fn_number}&i={self.fd_number}"
                f"&fp={self.fpd}&n={self._QR_OPERATION[self.doc_type]}")



class Correction(models.Model):
    """A correction receipt a manager made to fix a reconciliation gap (DESIGN.md: never by editing history).

    ``shift`` is the shift whose gap it fixes: the reconciliation counts it there, while the receipt itself
    lies in the shift the register was in when it was made (often a later one). Saved with its journal row
    (``operation``, and so its uuid) before the task is sent; who and why stay with it.
    """

    class Kind(models.TextChoices):
        SELL = "sellCorrection", "чек коррекции прихода"
        SELL_RETURN = "sellReturnCorrection", "чек коррекции возврата прихода"

    class Basis(models.TextChoices):
        SELF = "self", "самостоятельно"
        INSTRUCTION = "instruction", "по предписанию налогового органа"

    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="corrections")
    shift = models.ForeignKey(Shift, on_delete=models.PROTECT, related_name="corrections",
                              verbose_name="смена, которую исправляет")
    operation = models.OneToOneField(FiscalOperation, verbose_name="операция ККТ", on_delete=models.PROTECT,
                                     related_name="correction")
    job = models.OneToOneField(Event, verbose_name="действие в панели", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="correction", help_text="действие в панели, которым он запрошен")
    kind = models.CharField("вид", max_length=32, choices=Kind.choices)
    basis = models.CharField("основание", max_length=16, choices=Basis.choices)
    settlement_date = models.DateField("дата корректируемого расчёта")
    instruction_number = models.CharField("номер предписания", max_length=64, blank=True)
    total = models.DecimalField("сумма", max_digits=12, decimal_places=2)
    reason = models.TextField("почему")
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="fiscal_corrections", verbose_name="кто")
    created_at = models.DateTimeField("создан", auto_now_add=True)

    class Meta:
        verbose_name = "чек коррекции"
        verbose_name_plural = "чеки коррекции"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {rub(self.total)} (смена {self.shift.number})"
