from django.apps import AppConfig


class NekassirConfig(AppConfig):
    name = "nekassir"
    verbose_name = "Заведение"
