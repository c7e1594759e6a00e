"""`python manage.py add_model NAME --checkpoint PATH_OR_ARCHIVE [...]`: add and validate a checkpoint."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from evalsite.options import AT_LEAST_ONE, NON_NEGATIVE, SEED, real_number
from generation import services
from generation.errors import InputError
from generation.models import DType, PromptTemplate


class Command(BaseCommand):
    help = (
        "Add a model checkpoint: a .zip, .tar or .tar.gz of a Hugging Face model directory, a .gguf file "
        "(converted once to safetensors), or a server-side directory (used in place). It is validated here (safe "
        "extraction, safetensors weights only, a causal LM transformers knows, a loadable tokenizer, a chat template "
        "that renders in the sandbox) and ends ready, or the command fails with the reason."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", metavar="NAME")
        parser.add_argument("--checkpoint", required=True, metavar="PATH_OR_ARCHIVE_OR_GGUF")
        parser.add_argument("--template", choices=PromptTemplate.values, default=PromptTemplate.ALPACA)
        parser.add_argument("--max-new-tokens", type=AT_LEAST_ONE, default=256)
        parser.add_argument(
            "--temperature", type=NON_NEGATIVE, default=0.0, help="0 (the default) means greedy decoding."
        )
        parser.add_argument("--top-p", type=real_number(above=0.0, maximum=1.0), default=1.0)
        parser.add_argument("--seed", type=SEED, default=0)
        parser.add_argument("--dtype", choices=DType.values, default=DType.AUTO)
        parser.add_argument("--description", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"Validating {options['checkpoint']} ...")
        try:
            model = services.model_take_in(
                name=options["name"],
                source=options["checkpoint"],
                template=options["template"],
                max_new_tokens=options["max_new_tokens"],
                temperature=options["temperature"],
                top_p=options["top_p"],
                seed=options["seed"],
                dtype=options["dtype"],
                description=options["description"],
            )
        except InputError as exc:
            raise CommandError(str(exc)) from exc
        params = f"{model.parameter_count:,}" if model.parameter_count else "?"
        converted = f" (converted from a GGUF file, sha256 {model.source_sha256[:12]}…)" if model.source_sha256 else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Model {model.name!r} is ready: {model.architecture}, {params} parameters, "
                f"weights sha256 {model.weights_sha256[:12]}…{converted}, template {model.template}."
            )
        )
