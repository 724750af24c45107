from django.apps import AppConfig


class FiscalConfig(AppConfig):
    name = "fiscal"
    verbose_name = "Фискальные регистраторы"

    def ready(self) -> None:
        from fiscal import shifts  # noqa: F401 - registers the shift workflows' hooks on register sessions
