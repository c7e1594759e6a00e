"""Checks on a checkpoint's chat template, which is untrusted Jinja written by whoever made the upload.

Plain module, no Django. Templates are only ever rendered through transformers'
``apply_chat_template``, which compiles them in Jinja's
``ImmutableSandboxedEnvironment`` (no attribute escapes such as
``''.__class__.__mro__``, no mutation of the values passed in, bounded
``range``). The sandbox does not bound time or memory, so at intake the
template is rendered once on a probe conversation in a forked child process
with a wall-clock limit and an address-space limit: a template that escapes,
fails, loops for long or balloons is refused before the model becomes ready.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import time
from typing import Any

from generation.checkpoints import CheckpointError
from generation.prompting import format_chat

PROBE_SECONDS = 5.0
PROBE_MEMORY_BYTES = 1024**3
MAX_TEMPLATE_CHARS = 256 * 1024
MAX_RENDERED_CHARS = 1_000_000
_PROBE_TEXT = "blindeval-probe: What is the capital of France?"


def template_text(tokenizer: Any) -> str | None:
    """The tokenizer's chat template as one string (named templates as sorted JSON), or None."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return None
    if isinstance(template, dict):
        return json.dumps(template, sort_keys=True, ensure_ascii=False)
    return str(template)


def template_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _limit_memory(extra: int) -> None:
    import resource

    try:
        with open("/proc/self/status") as status:
            vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return  # not Linux: the time limit still holds
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, vm + extra))


def _render_in_child(tokenizer: Any, write_fd: int, memory: int) -> None:
    """Runs in the forked child: render the probe, report a small JSON summary, never return."""
    report: dict[str, object]
    try:
        _limit_memory(memory)
        text = format_chat(_PROBE_TEXT, tokenizer=tokenizer)
        report = {"chars": len(text), "has_probe": _PROBE_TEXT in text}
    except MemoryError:
        report = {"error": "it used more memory than allowed"}
    except BaseException as exc:  # SecurityError, TemplateError, anything the template raises
        report = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    try:
        os.write(write_fd, json.dumps(report).encode()[:60_000])
    finally:
        os._exit(0)


def _probe(tokenizer: Any, *, seconds: float, memory: int) -> dict[str, Any] | None:
    """Render in a forked child; None when it did not finish within ``seconds``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child leaves through os._exit
        os.close(read_fd)
        _render_in_child(tokenizer, write_fd, memory)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    finished = False
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([read_fd], [], [], left)
            if not ready:
                break
            block = os.read(read_fd, 65536)
            if not block:
                finished = True
                break
            chunks.append(block)
    finally:
        os.close(read_fd)
        if not finished:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if not finished:
        return None
    try:
        return json.loads(b"".join(chunks) or b"{}")
    except json.JSONDecodeError:
        return {"error": "the check process ended without a report"}


def chat_template_check(
    tokenizer: Any, *, seconds: float = PROBE_SECONDS, memory: int = PROBE_MEMORY_BYTES
) -> str | None:
    """Refuse a chat template that is too long, escapes the sandbox, fails, hangs or balloons.

    Returns the sha256 of the template text (None when the tokenizer has none).
    """
    text = template_text(tokenizer)
    if text is None:
        return None
    if len(text) > MAX_TEMPLATE_CHARS:
        raise CheckpointError(
            f"The chat template is {len(text)} characters long, over the limit of {MAX_TEMPLATE_CHARS}; real chat "
            "templates are a few kilobytes. Remove it from the tokenizer files (or shorten it) and upload again."
        )
    report = _probe(tokenizer, seconds=seconds, memory=memory)
    if report is None:
        raise CheckpointError(
            f"The chat template did not finish rendering a one-message conversation within {seconds:g} s (a loop "
            "that never ends, or one meant to exhaust the server); refused. Remove or fix the template and upload "
            "again."
        )
    if "error" in report:
        raise CheckpointError(
            f"The chat template could not render a one-message conversation in the sandbox ({report['error']}); "
            "refused. Templates are untrusted code: they may not reach Python internals and must render a user "
            "turn. Remove or fix the template and upload again."
        )
    if report.get("chars", 0) > MAX_RENDERED_CHARS:
        raise CheckpointError(
            f"The chat template turns a one-message conversation into {report['chars']} characters, over the limit "
            f"of {MAX_RENDERED_CHARS}; refused."
        )
    if not report.get("has_probe"):
        raise CheckpointError(
            "The chat template drops the user's message: rendering a conversation does not contain its text. "
            "Refused; fix the template or use the 'alpaca' or 'plain' template without it."
        )
    return template_sha256(text)
