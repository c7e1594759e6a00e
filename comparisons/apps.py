from django.apps import AppConfig


class ComparisonsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "comparisons"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from comparisons.backends import forget_signed_in

        request_finished.connect(forget_signed_in, dispatch_uid="comparisons.forget_signed_in")
