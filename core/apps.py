from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom floor's app: the kiosks and their device settings, tokens, device locks, the event journal."""

    name = "core"
    verbose_name = "Общее"
