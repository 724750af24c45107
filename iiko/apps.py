from django.apps import AppConfig


class IikoConfig(AppConfig):
    """The iiko room's app: no models yet (IikoConnection stays in nekassir for now, issue 12)."""

    name = "iiko"
    verbose_name = "iiko"
