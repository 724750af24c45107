from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NekassirConfig(AppConfig):
    name = "nekassir"
    verbose_name = "Заведение"

    def ready(self) -> None:
        # Django's place for connecting signals: the app registry is ready only now.
        from nekassir.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
