from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Банковские терминалы"

    def ready(self) -> None:
        # Every shift close (manual, automatic, `kkt close`) settles the terminal first.
        from fiscal import shifts
        from payments.refunds import finish_return_receipts
        from payments.settlement import settle_before_close

        if settle_before_close not in shifts.PRE_CLOSE_HOOKS:
            shifts.PRE_CLOSE_HOOKS.append(settle_before_close)
        # ...and a refund whose money went back gets its return receipt in the same shift.
        if finish_return_receipts not in shifts.UNFINISHED_DOCUMENT_CHECKS:
            shifts.UNFINISHED_DOCUMENT_CHECKS.append(finish_return_receipts)
