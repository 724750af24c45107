from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NekassirConfig(AppConfig):
    name = "nekassir"
    verbose_name = "Заведение"

    def ready(self) -> None:
        from fiscal import shifts
        from nekassir.checkout import finish_between_receipt_and_payment
        from nekassir.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
        # A shift close first carries on an order caught between its receipt and its payment (first in
        # the list: its annulment or payment must land in the shift being closed).
        if finish_between_receipt_and_payment not in shifts.UNFINISHED_DOCUMENT_CHECKS:
            shifts.UNFINISHED_DOCUMENT_CHECKS.insert(0, finish_between_receipt_and_payment)
