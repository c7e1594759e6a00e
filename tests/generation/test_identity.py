"""The self-identification detector (generation/identity.py) on a labelled list and on the real fixture outputs.

A rater who reads "As an AI language model trained by OpenAI…" knows who wrote that side; the detector
must find such answers (recall) without throwing away answers about alpacas, Google Maps or Claude
Monet (precision). The labelled sentences below are the contract: each is what a model could write in
answer to a Self-Instruct-like task.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generation.identity import (
    ENTRY_NAME,
    MODEL_NAME,
    SELF_DESCRIPTION,
    VENDOR,
    detect_identity,
    entry_name_pattern,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
# The entry names of the demo and of a generated model: matched anywhere, whole word.
ENTRY_NAMES = ["alpaca-7b", "text-davinci-003", "smollm2-135m-instruct", "zephyr"]

# (sentence, the kind the detector must report)
POSITIVES = [
    ("As an AI language model, I cannot browse the internet.", SELF_DESCRIPTION),
    ("As an AI, I don't have personal opinions on this.", SELF_DESCRIPTION),
    ("As a large language model, I have no feelings.", SELF_DESCRIPTION),
    ("as a language model I am unable to make phone calls", SELF_DESCRIPTION),
    ("As an artificial intelligence, I do not eat food.", SELF_DESCRIPTION),
    ("As an AI assistant, I recommend checking the official website.", SELF_DESCRIPTION),
    ("Being an AI, I can't taste the soup.", SELF_DESCRIPTION),
    ("I'm sorry, but I'm just a language model and I can't write your memoir.", SELF_DESCRIPTION),
    ("I am an AI and do not have a body.", SELF_DESCRIPTION),
    ("Hi, I'm an AI that is here to talk about love.", SELF_DESCRIPTION),
    ("I am only an AI language model, so I cannot give legal advice.", SELF_DESCRIPTION),
    ("Unfortunately I’m an AI, so I can’t visit the restaurant.", SELF_DESCRIPTION),
    ("I am a large language model.", SELF_DESCRIPTION),
    ("I'm a chatbot with no access to your calendar.", SELF_DESCRIPTION),
    ("I am an AI assistant here to help.", SELF_DESCRIPTION),
    ("I'm a virtual assistant, not a doctor.", SELF_DESCRIPTION),
    ("I'm not a person; I am an artificial intelligence.", SELF_DESCRIPTION),
    ("My knowledge cutoff is September 2021.", SELF_DESCRIPTION),
    ("As of my last training update, the record was 9.58 seconds.", SELF_DESCRIPTION),
    ("My training data only goes up to 2021, so this may be out of date.", SELF_DESCRIPTION),
    ("I am an LLM, so treat this as a draft.", SELF_DESCRIPTION),
    ("AS AN AI LANGUAGE MODEL I CANNOT DO THAT.", SELF_DESCRIPTION),
    ("Sure! As an A.I., I can suggest a few titles.", SELF_DESCRIPTION),
    ("I'm an AI model, not a financial adviser.", SELF_DESCRIPTION),
    ("I was trained by OpenAI to answer questions.", VENDOR),
    ("I am an AI assistant made by Anthropic.", VENDOR),
    ("I'm a language model developed by the team at Google.", VENDOR),
    ("I was created by Meta AI.", VENDOR),
    ("I am a model fine-tuned by Stanford researchers? No: I was fine-tuned by Stanford.", VENDOR),
    ("I have been developed by Microsoft Research.", VENDOR),
    ("My creators at OpenAI did not give me internet access.", VENDOR),
    ("OpenAI trained me on a large amount of text.", VENDOR),
    ("I am an OpenAI language model.", VENDOR),
    ("I'm Google's AI assistant.", VENDOR),
    ("I am a Meta AI model.", VENDOR),
    ("I was built by Mistral AI in Paris.", VENDOR),
    ("I was designed by DeepMind.", VENDOR),
    ("I am a large language model trained by Cohere.", VENDOR),
    ("I was developed by researchers at Tsinghua University.", VENDOR),
    ("I'm an assistant created by Alibaba Cloud.", VENDOR),
    ("I was created and trained by Hugging Face.", VENDOR),
    ("I'm ChatGPT, and I'd be happy to help.", MODEL_NAME),
    ("Hello! I am Claude, an AI assistant.", MODEL_NAME),
    ("I am Bard, your creative collaborator.", MODEL_NAME),
    ("My name is Gemini.", MODEL_NAME),
    ("You can call me Vicuna.", MODEL_NAME),
    ("I am based on GPT-4.", MODEL_NAME),
    ("I'm powered by GPT-3.5-turbo.", MODEL_NAME),
    ("I am a fine-tuned version of LLaMA.", MODEL_NAME),
    ("I am an Alpaca model fine-tuned from 52K demonstrations.", MODEL_NAME),
    ("As ChatGPT, I cannot browse the web.", MODEL_NAME),
    ("I'm Mistral, a helpful assistant.", MODEL_NAME),
    ("My underlying model is Qwen2.5.", MODEL_NAME),
    ("I'm SmolLM2, a compact assistant.", MODEL_NAME),
    ("I am the Vicuna model.", MODEL_NAME),
    ("You are talking to Bing Chat.", MODEL_NAME),
    ("This is Claude, an AI assistant.", MODEL_NAME),
    ("I'm InstructGPT.", MODEL_NAME),
    ("i am chatgpt", MODEL_NAME),
    ("I run on Llama 2.", MODEL_NAME),
    ("Thanks for asking! I’m Gemini Pro.", MODEL_NAME),
    ("This answer was written by alpaca-7b.", ENTRY_NAME),
    ("Generated with Alpaca 7B.", ENTRY_NAME),
    ("(text-davinci-003)", ENTRY_NAME),
    ("Output of TEXT_DAVINCI_003:", ENTRY_NAME),
    ("Response by text davinci 003", ENTRY_NAME),
    ("I am smollm2-135m-instruct.", ENTRY_NAME),
    ("SmolLM2 135M Instruct here.", ENTRY_NAME),
    ("alpaca7b says hi", ENTRY_NAME),
    ("My name is Zephyr.", ENTRY_NAME),
    ("I am Zephyr, a small assistant.", ENTRY_NAME),
]

NEGATIVES = [
    "I am happy to help.",
    "I'm happy to help you plan the trip.",
    "Google Maps shows the fastest route.",
    "Search Google for the opening hours.",
    "Alpacas are South American camelids.",
    "An alpaca is smaller than a llama.",
    "Llamas and alpacas both produce fibre.",
    "Add a Meta description tag to every page.",
    "The meta-learning strategy improves generalization.",
    "Claude Monet painted water lilies.",
    "I am Claude Monet, and I paint the light.",
    "Claude Debussy composed Clair de lune.",
    "I am a Gemini, so I love to talk.",
    "Gemini is the third sign of the zodiac.",
    "I am a bard who sings of old battles.",
    "Mistral is a cold wind in southern France.",
    "The mistral blew all night.",
    "I think ChatGPT is a great tool for drafting emails.",
    "ChatGPT is a state-of-the-art conversational AI system.",
    "Open Assistant is an open source ChatGPT that you don't want to miss.",
    "GPT-3 was trained by OpenAI on a large corpus.",
    "Triton is a deep learning framework developed by OpenAI.",
    "AI assistants help us automate mundane tasks.",
    "In 10 years, AI is expected to be more powerful.",
    "The AI recommended some phones with great cameras.",
    "AI-powered devices will be smaller and faster.",
    "As an AI researcher, I study reinforcement learning.",
    "As an AI enthusiast, I follow every release.",
    "I am an AI engineer at a fintech startup.",
    "I'm an AI ethicist working on fairness.",
    "I am a virtual assistant with five years of experience supporting executives.",
    "Hi, I'm Jane! I'm an architect who's interested in tech.",
    "I am a knight of humble origins.",
    "I am a powerful and passionate goddess.",
    "I'm a survivor in a post-apocalyptic world.",
    "I am a [position] at [company].",
    "I split my training data into three folds.",
    "The model's training data comes from Wikipedia.",
    "I bought a phone made by Google last year.",
    "I use Android, developed by Google, every day.",
    "We trained the model on 52K demonstrations.",
    "Microsoft Word can check your grammar.",
    "Amazon delivers the package tomorrow.",
    "The Stanford study found a small effect.",
    "I am a member of the professional organization.",
    "I'm afraid of being judged.",
    "Use a language model to draft the summary.",
    "Large language models such as GPT-4 can write code.",
    "Vicuna wool is the finest in the world.",
    "The vicuña lives in the Andes.",
    "Copilot suggestions appear as you type in the editor.",
    "The Falcon 9 rocket landed safely.",
    "He was trained by a master chef from Paris.",
    "Claude, please pass the salt.",
    "This is Gemini season, so expect surprises.",
    "Llama 2 and Mistral 7B are open-weight models.",
    "Qwen is a family of models released by Alibaba.",
    "I'm an experienced [skills] professional.",
    "As a language teacher, I correct essays daily.",
    "I am a big fan of the AI art movement.",
    "Models such as alpaca-like assistants are popular.",
    "The text is in the davinci code style.",
    "The cat was as smart as an AI.",
    "A gentle zephyr cooled the terrace.",
    "Zephyr is the west wind in Greek myth.",
]


def kinds(text: str) -> set[str]:
    return {m.kind for m in detect_identity(text, model_names=ENTRY_NAMES)}


def test_recall_and_precision_on_the_labelled_list():
    assert len(POSITIVES) >= 60 and len(NEGATIVES) >= 60
    found = [text for text, _ in POSITIVES if kinds(text)]
    false_alarms = [text for text in NEGATIVES if kinds(text)]
    true_positives = len(found)
    recall = true_positives / len(POSITIVES)
    precision = true_positives / (true_positives + len(false_alarms))
    missed = [text for text, _ in POSITIVES if not kinds(text)]
    assert recall >= 0.95, missed
    assert precision >= 0.97, false_alarms


@pytest.mark.parametrize(("text", "kind"), POSITIVES)
def test_each_positive_is_found_with_its_kind(text, kind):
    assert kind in kinds(text), detect_identity(text, model_names=ENTRY_NAMES)


@pytest.mark.parametrize("text", NEGATIVES)
def test_each_negative_is_left_alone(text):
    assert detect_identity(text, model_names=ENTRY_NAMES) == []


def test_a_match_gives_the_phrase_as_written_and_where_it_is():
    text = "Sure. As an AI language model, I cannot browse. Ask text-davinci-003 instead."
    matches = detect_identity(text, model_names=ENTRY_NAMES)
    assert [(m.kind, m.phrase) for m in matches] == [
        (SELF_DESCRIPTION, "As an AI language model"),
        (ENTRY_NAME, "text-davinci-003"),
    ]
    for match in matches:
        assert text[match.start : match.end] == match.phrase


def test_entry_names_are_whole_words_in_any_case_and_with_any_separator():
    pattern = entry_name_pattern("smollm2-135m-instruct")
    assert pattern is not None
    assert kinds("SMOLLM2_135M_INSTRUCT") == {ENTRY_NAME}
    assert kinds("smollm2.135m.instruct") == {ENTRY_NAME}
    # Not inside a longer word or number.
    assert kinds("xalpaca-7b") == set()
    assert kinds("alpaca-7b9") == set()
    # An entry name only counts when that entry exists.
    assert detect_identity("Generated with Alpaca 7B.", model_names=[]) == []


def test_invisible_characters_do_not_hide_a_phrase_and_positions_stay_those_of_the_stored_text():
    text = "Note: Open\u200bAI trained me. I'm Chat\u00adGPT."
    matches = detect_identity(text, model_names=ENTRY_NAMES)
    assert [(m.kind, m.phrase) for m in matches] == [(VENDOR, "OpenAI trained me"), (MODEL_NAME, "I'm ChatGPT")]
    assert [text[m.start : m.end] for m in matches] == ["Open\u200bAI trained me", "I'm Chat\u00adGPT"]


def test_overlapping_rules_report_a_phrase_once():
    matches = detect_identity("I am an AI language model trained by OpenAI.", model_names=ENTRY_NAMES)
    assert len(matches) == 1


def _fixture_texts() -> list[tuple[str, str, str]]:
    texts: list[tuple[str, str, str]] = []
    for path in sorted((FIXTURES / "alpaca_eval").glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8")):
            texts.append((path.name, entry["dataset"], entry["output"]))
    for path in sorted((FIXTURES / "self_instruct" / "predictions").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            texts.append((path.name, "selfinstruct", json.loads(line)["response"]))
    return texts


FIXTURE_ENTRY_NAMES = [
    "alpaca-7b",
    "text-davinci-003",
    "text-davinci-002",
    "text-davinci-001",
    "davinci-self-instruct",
]


def test_the_real_self_instruct_outputs_hold_no_self_identifying_answer():
    """Every answer to the 252 Self-Instruct tasks, of all six real models in fixtures/, passes clean."""
    texts = [(source, text) for source, dataset, text in _fixture_texts() if dataset == "selfinstruct"]
    assert len(texts) == 6 * 252
    flagged = [
        (source, m.phrase) for source, text in texts for m in detect_identity(text, model_names=FIXTURE_ENTRY_NAMES)
    ]
    assert flagged == []


def test_the_other_alpaca_eval_outputs_flag_exactly_the_two_real_self_descriptions():
    """The AlpacaEval files also hold 553 answers per model to other data sets (never imported into the
    Self-Instruct set). Read by hand, two of those 1,106 answers describe themselves as an AI, both
    Alpaca 7B's on Open Assistant prompts; answers that mention ChatGPT or AI as a topic are not flagged."""
    texts = [(source, text) for source, dataset, text in _fixture_texts() if dataset != "selfinstruct"]
    assert len(texts) == 2 * 553
    flagged = sorted(
        (source, m.kind, m.phrase)
        for source, text in texts
        for m in detect_identity(text, model_names=FIXTURE_ENTRY_NAMES)
    )
    assert flagged == [
        ("alpaca-7b.json", SELF_DESCRIPTION, "I'm an AI"),
        ("alpaca-7b.json", SELF_DESCRIPTION, "I'm just a language model"),
    ]
