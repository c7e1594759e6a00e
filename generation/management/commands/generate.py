"""`python manage.py generate NAME --evalset NAME [--wait]`: run a model on an eval set through the workers."""

from __future__ import annotations

import argparse
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from evalsite.options import POSITIVE, integer
from generation import selectors, services
from generation.errors import InputError
from generation.models import EvalSet, GenerationRun, ModelEntry

BAR_WIDTH = 30


def progress_line(progress: selectors.RunProgress) -> str:
    filled = int(BAR_WIDTH * progress.done / progress.total) if progress.total else 0
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    speed = f"{progress.tokens_per_second:.1f} tok/s" if progress.tokens_per_second is not None else "– tok/s"
    return (
        f"[{bar}] {progress.done}/{progress.total} ({progress.percent:.0f}%) {speed} "
        f"ETA {selectors.format_duration(progress.eta_seconds)} {progress.status}"
    )


class Command(BaseCommand):
    help = (
        "Generate the model's responses to every prompt of the eval set, split into chunks that Celery workers "
        "(queue 'generation') share. Running it again on the same pair resumes the run: only missing responses "
        "are generated. With --wait, show a progress bar until the run ends."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", metavar="NAME", help="The model (a ready checkpoint).")
        parser.add_argument("--evalset", required=True, metavar="NAME")
        parser.add_argument("--wait", action="store_true", help="Show progress until the run ends.")
        # Whole numbers here; their range is run_start's to check (services.run_start_check).
        parser.add_argument("--limit", type=integer, default=None, help="Only the first N prompts (new runs).")
        parser.add_argument("--chunk-size", type=integer, default=None, help="Prompts per worker task (new runs).")
        parser.add_argument("--batch-size", type=integer, default=None, help="Prompts per forward batch (new runs).")
        parser.add_argument(
            "--worker-timeout",
            type=POSITIVE,
            default=60.0,
            help="With --wait: give up (exit 1) if no worker picks the work up within this many seconds.",
        )
        parser.add_argument("--poll", type=POSITIVE, default=1.0, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = ModelEntry.objects.get(name=options["name"])
        except ModelEntry.DoesNotExist:
            raise CommandError(f"There is no model named {options['name']!r}; add it with add_model.") from None
        try:
            eval_set = EvalSet.objects.get(name=options["evalset"])
        except EvalSet.DoesNotExist:
            raise CommandError(
                f"There is no eval set named {options['evalset']!r}; import it with import_evalset."
            ) from None
        queued_at = timezone.now()
        try:
            run = services.run_start(
                model=model,
                eval_set=eval_set,
                prompt_limit=options["limit"],
                chunk_size=options["chunk_size"],
                batch_size=options["batch_size"],
            )
        except InputError as exc:
            raise CommandError(str(exc)) from exc
        progress = selectors.run_progress(run=run)
        self.stdout.write(f"Run {run.pk}: {model.name} on {eval_set.name}, {progress.done}/{progress.total} done.")
        if not options["wait"]:
            if not progress.finished:
                self.stdout.write("Queued. Follow it with --wait or on the run's admin page.")
            return
        self._wait(run, queued_at=queued_at, worker_timeout=options["worker_timeout"], poll=options["poll"])

    def _wait(self, run: GenerationRun, *, queued_at, worker_timeout: float, poll: float) -> None:
        tty = hasattr(self.stdout, "isatty") and self.stdout.isatty()
        started = time.monotonic()
        last_resume = started
        last_line = ""
        resume_every = max(settings.GENERATION_STALE_SECONDS / 2, 1)
        while True:
            progress = selectors.run_progress(run=run)
            line = progress_line(progress)
            if line != last_line:
                self.stdout.write(("\r" + line) if tty else line, ending="" if tty else "\n")
                last_line = line
            if progress.finished:
                break
            waited = time.monotonic() - started
            if waited > worker_timeout and not selectors.run_picked_up_since(run=run, since=queued_at):
                raise CommandError(
                    f"No worker has picked up the work after {worker_timeout:g} seconds. Start one with "
                    "`celery -A evalsite worker -Q generation,default` (same DATABASE_URL and CELERY_BROKER_URL); "
                    "the run stays queued and starts as soon as a worker is there."
                )
            if time.monotonic() - last_resume >= resume_every:
                # Chunks whose worker died (stale heartbeat) go back in the queue.
                services.run_resume(run=run)
                last_resume = time.monotonic()
            time.sleep(poll)
        if tty:
            self.stdout.write("")
        if progress.status == GenerationRun.Status.FAILED:
            raise CommandError(f"The run failed: {progress.error}")
        if progress.status == GenerationRun.Status.CANCELLED:
            raise CommandError("The run was cancelled; run generate again to resume it.")
        self.stdout.write(self.style.SUCCESS(f"Done: {progress.done}/{progress.total} responses."))
