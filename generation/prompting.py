"""Prompt templates: turn an instruction (+ input) into the text a model is given.

Pure functions with no Django imports, so the generator, the tests and the
benchmark share exactly one definition of each format.
"""

from __future__ import annotations

from typing import Any, Protocol

TEMPLATES = ("alpaca", "chat", "plain")

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_WITHOUT_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


class ChatTokenizer(Protocol):
    chat_template: Any

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


class TemplateError(ValueError):
    """The prompt cannot be built with the chosen template (e.g. no chat template)."""


def compose_instruction(instruction: str, input_text: str = "") -> str:
    """The instruction, a blank line, then the input when there is one (the AlpacaEval form)."""
    if input_text:
        return f"{instruction}\n\n{input_text}"
    return instruction


def format_alpaca(instruction: str, input_text: str = "") -> str:
    """The Stanford Alpaca prompt, exactly as Alpaca checkpoints were trained on it."""
    if input_text:
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input_text)
    return ALPACA_WITHOUT_INPUT.format(instruction=instruction)


def format_plain(instruction: str, input_text: str = "") -> str:
    """The bare instruction (and input) followed by a newline, for base models."""
    return compose_instruction(instruction, input_text) + "\n"


def format_chat(instruction: str, input_text: str = "", *, tokenizer: ChatTokenizer) -> str:
    """One user turn rendered with the tokenizer's own chat template, ready for the assistant's reply."""
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError(
            "This tokenizer has no chat template; choose the 'alpaca' or 'plain' template for this model."
        )
    messages = [{"role": "user", "content": compose_instruction(instruction, input_text)}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(text)


def format_prompt(template: str, instruction: str, input_text: str = "", *, tokenizer: Any = None) -> str:
    """Build the model input for one prompt with the named template (alpaca, chat or plain)."""
    if template == "alpaca":
        return format_alpaca(instruction, input_text)
    if template == "plain":
        return format_plain(instruction, input_text)
    if template == "chat":
        if tokenizer is None:
            raise TemplateError("The chat template needs the model's tokenizer.")
        return format_chat(instruction, input_text, tokenizer=tokenizer)
    raise TemplateError(f"Unknown prompt template {template!r}; choose one of {', '.join(TEMPLATES)}.")
