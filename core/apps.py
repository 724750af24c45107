from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom floor's app: the kiosks and their device settings, tokens, device locks, the event journal."""

    name = "core"
    verbose_name = "Общее"

    def ready(self) -> None:
        # Django's place for registering checks: core.checks reads the models, loaded only now.
        from core import checks  # noqa: F401
