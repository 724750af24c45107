"""The admin is for data fixes, not for rewriting history (issue 14).

``RussianAdmin``: every floor's admin classes build on it, so that its titles read as Russian. Django puts a
model's ``verbose_name`` as it stands after «Добавить», «Изменить», «Просмотреть» and «Выберите … для
изменения»; that reads right for a name whose accusative is the same (киоск, подключение iiko), and a
feminine name gives its accusative here (``accusative = "смену"``) while ``verbose_name`` stays the
nominative that the content types, the permission lists and the panel's journal show. A model with a
feminine name is never addable in our admin (Django's own Russian messages after adding are masculine).

``HistoryAdmin``: what devices did and what happened (fiscal documents and operations, shifts, card
operations, settlements, the journal, the device locks) is evidence: its lists and pages open, nothing is
added, changed or deleted here. A gap is fixed by a new record (a correction receipt), never by editing one.

The device locks and the journal, core's own, are registered here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext

from core.addresses import without_credentials
from core.events import record_event
from core.models import DeviceLock, Event

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin

LOCK_RELEASED = "core.lock.released"


class RussianAdmin(_ModelAdmin):
    """A ModelAdmin whose titles put the model's name in the accusative (see the module's docstring)."""

    accusative = ""  # empty: the verbose_name reads right as it stands

    def accusative_name(self) -> str:
        return self.accusative or str(self.opts.verbose_name)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if self.accusative:
            if IS_POPUP_VAR in request.GET:
                title = gettext("Select %s")
            elif self.has_change_permission(request):
                title = gettext("Select %s to change")
            else:
                title = gettext("Select %s to view")
            # add_title: the changelist's «Добавить …» button (templates/admin/change_list_object_tools.html).
            extra_context = {"title": title % self.accusative, "add_title": gettext("Add %s") % self.accusative,
                             **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict[str, Any] | None = None) -> Any:
        if self.accusative:
            if object_id is None:
                title = gettext("Add %s")
            elif self.has_change_permission(request):
                title = gettext("Change %s")
            else:
                title = gettext("View %s")
            extra_context = {"title": title % self.accusative, **(extra_context or {})}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request: HttpRequest, object_id: str,
                    extra_context: dict[str, Any] | None = None) -> Any:
        if self.accusative:  # «Вы уверены, что хотите удалить группу …?»
            extra_context = {"object_name": self.accusative, **(extra_context or {})}
        return super().delete_view(request, object_id, extra_context)


class HistoryAdmin(RussianAdmin):
    """Read-only: viewed, never added, changed or deleted (see the module's docstring)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DeviceLock)
class DeviceLockAdmin(HistoryAdmin):
    """The leases on devices. One whose lease has run out may be released by hand (journaled); a live one never:
    its holder may be printing a receipt or charging a card right now."""

    accusative = "блокировку устройства"
    list_display = ("shown_key", "holder", "purpose", "acquired_at", "expires_at", "lease")
    readonly_fields = ("shown_key", "holder", "purpose", "acquired_at", "expires_at", "lease")
    exclude = ("key",)
    actions = ["release_expired"]

    @admin.display(description="ключ", ordering="key")
    def shown_key(self, lock: DeviceLock) -> str:
        return without_credentials(lock.key, mark="***")  # a row keyed before keys were cleaned (issue 16)

    @admin.display(description="срок")
    def lease(self, lock: DeviceLock) -> str:
        if not lock.holder:
            return "свободна"
        if lock.expires_at is None or lock.expires_at > timezone.now():
            return "действует"
        return "истёк"

    def has_release_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("core.change_devicelock"))

    @admin.action(description="Освободить блокировки с истёкшим сроком", permissions=["release"])
    def release_expired(self, request: HttpRequest, queryset: QuerySet[DeviceLock]) -> None:
        for lock in queryset:
            self._release_if_expired(request, lock)

    def _release_if_expired(self, request: HttpRequest, lock: DeviceLock) -> None:
        shown = without_credentials(lock.key, mark="***")
        now = timezone.now()
        if not lock.holder:
            self.message_user(request, f"Блокировка {shown} свободна: освобождать нечего.", messages.INFO)
            return
        if lock.expires_at is None or lock.expires_at > now:
            until = f" до {timezone.localtime(lock.expires_at):%d.%m.%Y %H:%M:%S}" if lock.expires_at else ""
            self.message_user(
                request, f"Блокировка {shown} не освобождена: её срок ещё действует{until}. Устройство занято "
                         f"(«{lock.purpose or 'без описания'}», {lock.holder}); снять действующую блокировку "
                         "нельзя — дождитесь окончания срока.", messages.ERROR)
            return
        # Compare-and-set: only the row as it was read, still expired (its holder may have renewed it, or another
        # process claimed it, since the list was shown).
        released = DeviceLock.objects.filter(
            pk=lock.pk, holder=lock.holder, acquired_at=lock.acquired_at, expires_at__lte=now,
        ).update(holder="", purpose="", expires_at=None)
        if not released:
            self.message_user(request, f"Блокировка {shown} не освобождена: её заняли заново, пока вы смотрели "
                                       "список.", messages.WARNING)
            return
        expired = timezone.localtime(lock.expires_at)
        message = (f"Освобождена блокировка {shown} с истёкшим сроком (истёк {expired:%d.%m.%Y %H:%M:%S}; "
                   f"держал {lock.holder}, «{lock.purpose or 'без описания'}»)")
        record_event(LOCK_RELEASED, user=request.user, message=message, object_ref=f"lock:{lock.pk}",
                     data={"key": shown, "holder": lock.holder, "purpose": lock.purpose,
                           "acquired_at": lock.acquired_at.isoformat() if lock.acquired_at else None,
                           "expires_at": lock.expires_at.isoformat() if lock.expires_at else None})
        self.message_user(request, message + ".", messages.SUCCESS)


@admin.register(Event)
class EventAdmin(HistoryAdmin):
    """The journal is history: read here, never edited."""

    list_display = ("created_at", "action", "kiosk", "user", "message")
    list_filter = ("action", "kiosk")
    search_fields = ("message", "object_ref")
