"""The marking room's models: which products are marked, and every request to the check service.

Floor: middle, the marking room (``marking``); imports only the bottom (``core``) (import-linter,
pyproject.toml).
"""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import ValidationError
from django.db import models

from core.models import Kiosk
from marking.client import CodeVerdict

_GTIN = re.compile(r"^\d{14}$")


def validate_gtins(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(g, str) and _GTIN.match(g) for g in value):
        raise ValidationError("Список GTIN: строки из 14 цифр, например [\"04600000000013\"]")


class MarkedProduct(models.Model):
    """A product of the iiko menu (by its id) whose units carry marking codes, and the GTINs they may carry."""

    class Group(models.TextChoices):
        WATER = "water", "Упакованная вода"
        SOFTDRINKS = "softdrinks", "Безалкогольные напитки"
        JUICES = "juices", "Соки"
        DAIRY = "dairy", "Молочная продукция (и мороженое)"
        OTHER = "other", "Другое"

    product_id = models.UUIDField("id продукта в iiko", unique=True)
    name = models.CharField("название", max_length=255, blank=True)
    group = models.CharField("товарная группа", max_length=16, choices=Group.choices, default=Group.OTHER)
    gtins = models.JSONField(
        "GTIN", default=list, blank=True, validators=[validate_gtins],
        help_text="GTIN, которые может нести код единицы товара (14 цифр каждый)",
    )

    class Meta:
        verbose_name = "маркированный товар"
        verbose_name_plural = "маркированные товары"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name or str(self.product_id)


class MarkingCheck(models.Model):
    """One request to the check service, saved BEFORE the call under our own id; ``state`` tells the outcome."""

    class State(models.TextChoices):
        PENDING = "pending", "сохранено, не отправлено"
        SENT = "sent", "отправлено, ждём ответ"
        ANSWERED = "answered", "ответ получен"
        UNAVAILABLE = "unavailable", "служба недоступна"
        REFUSED = "refused", "служба отказала"

    id = models.UUIDField("идентификатор", primary_key=True, default=uuid.uuid4, editable=False)
    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="marking_checks")
    codes = models.JSONField("коды", default=list)
    state = models.CharField("состояние", max_length=16, choices=State.choices, default=State.PENDING)
    req_id = models.CharField("reqId", max_length=64, blank=True)
    req_timestamp = models.BigIntegerField("reqTimestamp (мс)", null=True, blank=True)
    answer = models.JSONField("ответ", null=True, blank=True)
    error = models.TextField("ошибка", blank=True)
    created_at = models.DateTimeField("создана", auto_now_add=True)
    sent_at = models.DateTimeField("отправлена", null=True, blank=True)
    finished_at = models.DateTimeField("завершена", null=True, blank=True)

    class Meta:
        verbose_name = "проверка кодов маркировки"
        verbose_name_plural = "проверки кодов маркировки"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} ({self.get_state_display()})"

    @property
    def verdicts(self) -> dict[str, CodeVerdict]:
        """The typed verdict per code once answered (empty otherwise)."""
        if self.state != self.State.ANSWERED or not self.answer:
            return {}
        return {raw: CodeVerdict.from_json(data) for raw, data in (self.answer.get("codes") or {}).items()}

    @property
    def industry_attribute(self) -> str:
        """``UUID=<reqId>&Time=<reqTimestamp>`` for the receipt's industryInfo (tag 1265); "" unless answered."""
        if self.state != self.State.ANSWERED:
            return ""
        return f"UUID={self.req_id}&Time={self.req_timestamp}"
