from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom floor's app: no models yet (Kiosk, the locks and the journal move here later, issue 12)."""

    name = "core"
    verbose_name = "Общее"
