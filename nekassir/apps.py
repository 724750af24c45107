from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NekassirConfig(AppConfig):
    name = "nekassir"
    verbose_name = "Заведение"

    def ready(self) -> None:
        from nekassir.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
