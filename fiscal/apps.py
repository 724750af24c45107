from django.apps import AppConfig


class FiscalConfig(AppConfig):
    name = "fiscal"
    verbose_name = "Фискальные регистраторы"
