"""Self-identifying answers: find where a response names its model, its maker or its own nature as an AI.

Pure text rules (no Django), so import, generation, the campaign builder and the tests share one
definition. What counts, by ``kind``:

``self_description``
    the answer speaks of itself as an AI: "As an AI language model, …", "I'm just a language model",
    "I am an AI assistant", "my knowledge cutoff".
``vendor``
    the answer names who made it: "I was trained by OpenAI", "I am an AI assistant made by Anthropic",
    "my creators at Google", "I'm a Meta AI model". A vendor named in any other sentence ("Google Maps",
    "the Meta description tag") is not a match.
``model_name``
    a well-known model name in an identity context: "I'm ChatGPT", "my name is Claude", "I am based on
    GPT-4", "As Bard, I …", "I am an Alpaca model". The same names anywhere else ("Alpacas are South
    American camelids", "Claude Monet", "I am a Gemini") are not matches.
``entry_name``
    the name of a model entry of this installation (``alpaca-7b``, ``text-davinci-003``), anywhere in the
    text, whole word, any case, with hyphens, underscores, dots or spaces between its parts or none
    ("Alpaca 7B", "text davinci 003"). A name of one plain word without digits ("llama") is too common
    to match anywhere: it counts only in an identity context, like a well-known model name.

Matching is precise rather than exhaustive: an identity context means a first-person sentence about
the speaker itself, so answers written in a persona ("I am a knight", "Hi, I'm Jane, an architect")
and answers about AI in general ("AI assistants help us…", "ChatGPT is a great tool") are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

SELF_DESCRIPTION = "self_description"
VENDOR = "vendor"
MODEL_NAME = "model_name"
ENTRY_NAME = "entry_name"
KINDS = (SELF_DESCRIPTION, VENDOR, MODEL_NAME, ENTRY_NAME)


@dataclass(frozen=True)
class IdentityMatch:
    """One self-identifying phrase: the text as written, what kind of match it is, and where it is."""

    phrase: str
    kind: str
    start: int
    end: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Apostrophes as models write them: straight or typographic.
_APOS = "['’]"
_I_AM = rf"\bI(?:{_APOS}m|\s+am)"
_I_AM_OR_WAS = rf"\bI(?:{_APOS}m|\s+am|\s+was|{_APOS}ve\s+been|\s+have\s+been)"
_HEDGE = r"(?:(?:just|only|merely|simply|actually|really|not)\s+)?"
_MADE = r"(?:created|developed|trained|made|built|designed|programmed|fine-?tuned|finetuned|released|owned|maintained)"

# What an AI calls itself.
_AI_NOUN = (
    r"(?:AI|A\.I\.|artificial\s+intelligence|(?:large\s+)?language\s+model|LLM|chat\s*bot|conversational\s+AI"
    r"|virtual\s+AI\s+assistant|AI[- ]powered\s+assistant)"
)
_AI_TAIL = r"(?:\s+(?:language\s+model|model|assistant|chat\s*bot|system|program|bot|agent))?"
# After "I am an AI…" or "as an AI…": the end of the phrase, or words that go on about the speaker, not a
# profession ("I am an AI researcher", "as an AI enthusiast" are people).
_SELF_FOLLOW = (
    r"(?=\s*(?:[,.;:!?)\]\"”]|$)|\s+(?:and|but|so|that|which|who|with|without|I|I['’]m|me|my|myself|here|by|from"
    r"|of|created|developed|trained|made|built|designed|programmed|owned|powered|based|like|not|cannot|can['’]t"
    r"|do|don['’]t|have|am|is|does|doesn['’]t|are|was)\b)"
)

_VENDORS = (
    r"(?:OpenAI|Open\s+AI|Anthropic|Google(?:\s+(?:DeepMind|AI|Brain|Research))?|DeepMind|Meta(?:\s+AI)?"
    r"|Facebook(?:\s+AI(?:\s+Research)?)?|FAIR|Mistral(?:\s+AI)?|Microsoft(?:\s+Research)?|Cohere|Alibaba(?:\s+Cloud)?"
    r"|Hugging\s*Face|Stability\s+AI|AI21(?:\s+Labs)?|xAI|Baidu|Amazon|IBM|NVIDIA|EleutherAI|Tsinghua(?:\s+University)?"
    r"|Stanford(?:\s+University)?|LMSYS|Large\s+Model\s+Systems\s+Organization|Together\s+AI|TII|DeepSeek|Qwen\s+Team)"
)

# Well-known model names (with their usual version suffixes).
_MODEL_NAMES = (
    r"(?:ChatGPT(?:[- ]?\d(?:\.\d)?)?|InstructGPT|GPT[- ]?(?:\d(?:\.\d)?(?:[- ]?(?:turbo|o|mini))*|J|NeoX)"
    r"|(?:text[- ])?davinci(?:[- ]\d{3})?|Claude(?:[- ]?\d(?:\.\d)?)?(?:\s+(?:Instant|Opus|Sonnet|Haiku))?"
    r"|Bard|Gemini(?:\s+(?:Pro|Ultra|Nano|Advanced))?|Gemma|PaLM(?:[- ]?2)?|LLaMA(?:[- ]?\d(?:\.\d)?)?|Llama\s+\d"
    r"|Alpaca(?:[- ]?\d+B)?|Vicuna(?:[- ]?\d+B)?|Mistral(?:[- ]?\d+B)?|Mixtral|Qwen\d?(?:\.\d)?|SmolLM\d?"
    r"|Bing\s+Chat|Copilot|DeepSeek|Grok|ERNIE(?:\s+Bot)?|StableLM|Pythia|Koala(?:[- ]?\d+B)?|Open\s+Assistant)"
)
# A name followed by a capitalised word is a person ("Claude Monet", "Claude Debussy"), not a model.
_NOT_A_SURNAME = r"(?![ \t]+(?-i:[A-Z][a-z]))"

_SELF_DESCRIPTION_RULES = [
    # "As an AI language model, I …", "as a large language model", "As an AI developed by …"
    rf"\b(?:as|being)\s+an?\s+{_AI_NOUN}{_AI_TAIL}{_SELF_FOLLOW}",
    # "I am an AI", "I'm just a language model", "I am an AI assistant", "I'm not a human, I'm a chatbot"
    rf"{_I_AM}\s+{_HEDGE}(?:an?\s+)?{_AI_NOUN}{_AI_TAIL}{_SELF_FOLLOW}",
    rf"{_I_AM}\s+{_HEDGE}(?:an?\s+)?AI\s+assistant{_SELF_FOLLOW}",
    # "virtual assistant" is also a job: only alone at the end of a clause ("I'm a virtual assistant, not …")
    rf"{_I_AM}\s+{_HEDGE}(?:an?\s+)?(?:virtual|digital|automated)\s+assistant(?=\s*(?:[,.;:!?]|$))",
    # "my knowledge cutoff", "as of my last training update", "my training data only goes up to"
    r"\bmy\s+(?:knowledge|training)\s+cut-?\s?off\b",
    r"\bas\s+of\s+my\s+(?:last\s+)?(?:training|knowledge)\s+(?:update|cut-?\s?off|data)\b",
    r"\bmy\s+training\s+data\s+(?:only\s+)?(?:goes|extends|ends|runs|stops|is\s+limited|only\s+covers)\b",
]

_VENDOR_RULES = [
    # "I was trained by OpenAI", "I am an AI assistant made by Anthropic", "I'm a model developed by the team at Google"
    rf"{_I_AM_OR_WAS}\s+{_HEDGE}(?:(?:an?|the)\s+(?:[\w-]+\s+){{0,4}}?)?{_MADE}\s+(?:and\s+\w+\s+)?by\s+(?:the\s+)?"
    rf"(?:(?:team|researchers|engineers|people|folks)\s+(?:at|from)\s+)?{_VENDORS}\b",
    # "my creators at OpenAI", "my developers from Meta"
    rf"\bmy\s+(?:creators?|developers?|makers?|trainers?|engineers?|programmers?|designers?|team)\s+(?:at|from)\s+"
    rf"{_VENDORS}\b",
    # "OpenAI trained me", "Anthropic's researchers built me"
    rf"\b{_VENDORS}(?:{_APOS}s)?\s+(?:(?:team|researchers|engineers)\s+)?{_MADE}\s+me\b",
    # "I am an OpenAI language model", "I'm Google's AI assistant", "I'm a Meta AI model"
    rf"{_I_AM}\s+{_HEDGE}(?:an?\s+|the\s+)?{_VENDORS}(?:{_APOS}s)?\s+(?:[\w-]+\s+){{0,3}}?"
    r"(?:AI|model|language\s+model|assistant|chat\s*bot|LLM|product)\b",
    # "a language model trained by OpenAI" said of oneself: "As an AI trained by Google, …"
    rf"\b(?:as|being)\s+an?\s+{_AI_NOUN}{_AI_TAIL}\s+{_MADE}\s+by\s+{_VENDORS}\b",
]


def _model_name_rules(names: str) -> list[str]:
    """Identity contexts around a name pattern ``names`` (well-known models, or entry names of one word)."""
    name = rf"(?:{names}){_NOT_A_SURNAME}(?![\w-])"
    return [
        # "I'm ChatGPT", "I am Claude, …", "I'm actually Bard", "I am the Vicuna model"
        rf"{_I_AM}\s+{_HEDGE}(?:called\s+|named\s+)?(?:the\s+)?{name}",
        # "my name is Claude", "call me Bard", "I go by Gemini", "you are talking to ChatGPT"
        rf"\b(?:my\s+name\s+is|call\s+me|I\s+go\s+by|I\s+am\s+called|I{_APOS}m\s+called|I\s+am\s+known\s+as"
        rf"|you{_APOS}re\s+(?:talking|chatting|speaking)\s+(?:to|with)|you\s+are\s+(?:talking|chatting|speaking)"
        rf"\s+(?:to|with))\s+{name}",
        # "I am an Alpaca model", "I'm a Vicuna language model", "I am a fine-tuned version of LLaMA"
        rf"{_I_AM}\s+{_HEDGE}an?\s+(?:[\w-]+\s+){{0,2}}?(?:{names})(?![\w-])\s+(?:model|language\s+model|LLM|AI"
        r"|assistant|chat\s*bot)\b",
        rf"{_I_AM}\s+{_HEDGE}(?:an?\s+)?(?:fine-?tuned\s+)?(?:version|variant|instance|fine-?tune|derivative)\s+of\s+"
        rf"(?:the\s+)?{name}",
        # "I am based on GPT-4", "I'm powered by LLaMA", "I run on Mistral", "my underlying model is Qwen"
        rf"\bI(?:{_APOS}m|\s+am|\s+was)\s+{_HEDGE}(?:based\s+on|built\s+on|powered\s+by|trained\s+from"
        rf"|fine-?tuned\s+from|derived\s+from)\s+(?:the\s+)?{name}",
        rf"\bI\s+run\s+on\s+(?:the\s+)?{name}",
        rf"\bmy\s+(?:underlying\s+)?(?:model|architecture|base\s+model)\s+is\s+(?:based\s+on\s+)?(?:the\s+)?{name}",
        # "As ChatGPT, I …", "Speaking as Claude, I"
        rf"\bas\s+{name},?\s+I\b",
        # "I'm ChatGPT" said the other way round: "This is Claude, an AI assistant"
        rf"\bthis\s+is\s+{name},\s+(?:an?\s+|your\s+)?(?:AI|language\s+model|large\s+language\s+model|assistant"
        r"|chat\s*bot)\b",
    ]


def _compile(rules: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{rule})" for rule in rules), re.IGNORECASE)


_FIXED = [
    (SELF_DESCRIPTION, _compile(_SELF_DESCRIPTION_RULES)),
    (VENDOR, _compile(_VENDOR_RULES)),
    (MODEL_NAME, _compile(_model_name_rules(_MODEL_NAMES))),
]

_NAME_PART = re.compile(r"[A-Za-z]+|\d+(?:\.\d+)?[A-Za-z]*")
_SEPARATOR = r"[-_ .]?"


def _entry_name_parts(name: str) -> list[str]:
    """A model entry's name cut into parts at separators and letter/digit boundaries: alpaca-7b → alpaca, 7b."""
    return _NAME_PART.findall(name)


def entry_name_pattern(name: str) -> str | None:
    """The regular expression an entry name is matched with, or None for a name with no letters or digits.

    Parts may be joined by a hyphen, an underscore, a dot, a space or nothing, in any case; the match is
    a whole word (no letter or digit on either side)."""
    parts = _entry_name_parts(name)
    if not parts:
        return None
    return _SEPARATOR.join(re.escape(part) for part in parts)


def _distinctive(name: str) -> bool:
    """Whether an entry name is unlikely in ordinary prose: several parts, or a digit (gpt2, alpaca-7b)."""
    parts = _entry_name_parts(name)
    return len(parts) > 1 or any(ch.isdigit() for ch in name)


def _entry_patterns(names: Iterable[str]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """(names matched anywhere, plain one-word names matched in identity contexts only)."""
    anywhere: list[str] = []
    plain: list[str] = []
    for name in sorted(set(names), key=lambda n: (-len(n), n)):  # longest first: "alpaca-7b-v2" before "alpaca-7b"
        pattern = entry_name_pattern(name)
        if pattern is None:
            continue
        (anywhere if _distinctive(name) else plain).append(pattern)
    return (
        re.compile(rf"(?<![A-Za-z0-9])(?:{'|'.join(anywhere)})(?![A-Za-z0-9])", re.IGNORECASE) if anywhere else None,
        _compile(_model_name_rules("|".join(plain))) if plain else None,
    )


# Unicode format characters (category Cf) that show nothing: soft hyphen, zero-width spaces and joiners,
# direction marks and embeddings, word joiner and invisible operators, BOM, interlinear annotation marks.
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")

# "as smart as an AI", "as fast as a chatbot": a comparison, not the speaker describing itself.
_COMPARISON_BEFORE = re.compile(r"\bas\s+[\w-]+\s+$", re.IGNORECASE)


def detect_identity(text: str, *, model_names: Sequence[str] = ()) -> list[IdentityMatch]:
    """Every self-identifying phrase in ``text``, in order of position (see the module docstring).

    ``model_names`` are the names of the model entries of the installation (all of them, not only the
    one that wrote the text: an answer naming a rival model tells as much). Overlapping matches are
    reported once, the earliest (then the longest) winning.
    """
    # Invisible format characters ("Open\u200bAI", "Chat\u00adGPT") are not shown to a rater: read past them,
    # and report positions in the text as stored.
    positions: list[int] | None = None
    if _INVISIBLE.search(text):
        positions = [i for i, ch in enumerate(text) if not _INVISIBLE.match(ch)]
        text = "".join(text[i] for i in positions)
    found: list[IdentityMatch] = []
    anywhere, plain = _entry_patterns(model_names)
    patterns: list[tuple[str, re.Pattern[str] | None]] = [*_FIXED, (ENTRY_NAME, anywhere), (ENTRY_NAME, plain)]
    for kind, pattern in patterns:
        if pattern is None:
            continue
        for match in pattern.finditer(text):
            phrase = match.group(0).strip()
            if kind == SELF_DESCRIPTION and _COMPARISON_BEFORE.search(text, 0, match.start()):
                continue
            if phrase:
                start = match.start() + (len(match.group(0)) - len(match.group(0).lstrip()))
                end = start + len(phrase)
                if positions is not None:
                    start, end = positions[start], positions[end - 1] + 1
                found.append(IdentityMatch(phrase=phrase, kind=kind, start=start, end=end))
    found.sort(key=lambda m: (m.start, -(m.end - m.start), KINDS.index(m.kind)))
    kept: list[IdentityMatch] = []
    for item in found:
        if kept and item.start < kept[-1].end:
            continue
        kept.append(item)
    return kept


def matches_as_json(matches: Iterable[IdentityMatch]) -> list[dict[str, Any]]:
    """The form stored on a response: a list of {phrase, kind, start, end}."""
    return [match.as_dict() for match in matches]


def describe(matches: Iterable[dict[str, Any]]) -> str:
    """Stored matches in words, for admins: '"As an AI language model" (self description); …'."""
    return "; ".join(f"“{m['phrase']}” ({str(m['kind']).replace('_', ' ')})" for m in matches)
