from django.apps import AppConfig


class MarkingConfig(AppConfig):
    """The marking room: the marking operator's check service (wire client, emulator) and its own models."""

    name = "marking"
    verbose_name = "Маркировка (Честный ЗНАК)"
