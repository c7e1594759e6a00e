"""Prompt templates: the Alpaca format exactly as Alpaca checkpoints expect it, chat and plain."""

from __future__ import annotations

import pytest

from generation.prompting import TemplateError, format_prompt
from tests.generation.tiny_models import train_tokenizer

ALPACA_WITH_INPUT = """Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.

### Instruction:
Translate to French.

### Input:
Good morning.

### Response:
"""  # noqa: E501

ALPACA_WITHOUT_INPUT = """Below is an instruction that describes a task. Write a response that appropriately completes the request.

### Instruction:
Name three primary colours.

### Response:
"""  # noqa: E501


def test_alpaca_with_input_is_the_published_format():
    assert format_prompt("alpaca", "Translate to French.", "Good morning.") == ALPACA_WITH_INPUT


def test_alpaca_without_input_is_the_published_format():
    assert format_prompt("alpaca", "Name three primary colours.", "") == ALPACA_WITHOUT_INPUT


def test_plain_is_instruction_then_input():
    assert format_prompt("plain", "Summarise.", "A long text.") == "Summarise.\n\nA long text.\n"
    assert format_prompt("plain", "Say hi.") == "Say hi.\n"


def test_chat_uses_the_tokenizers_template_with_a_generation_prompt():
    tokenizer = train_tokenizer(["a few words to learn from", "and a few more"])
    text = format_prompt("chat", "Summarise.", "A long text.", tokenizer=tokenizer)
    assert text == "<|user|>\nSummarise.\n\nA long text.\n<|assistant|>\n"


def test_chat_without_a_template_says_which_templates_to_use():
    tokenizer = train_tokenizer(["some words"])
    tokenizer.chat_template = None
    with pytest.raises(TemplateError, match="no chat template.*'alpaca' or 'plain'"):
        format_prompt("chat", "Hi", tokenizer=tokenizer)


def test_unknown_template_is_refused():
    with pytest.raises(TemplateError, match="Unknown prompt template 'vicuna'"):
        format_prompt("vicuna", "Hi")
