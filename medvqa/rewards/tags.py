"""Reading the structured completion `<think>...</think>[<plane>...</plane>][<modality>...</modality>]<answer>...</answer>`."""

from __future__ import annotations

import re

TAGS = ("think", "plane", "modality", "answer")
# the whole completion: reasoning first, optional plane / modality tags (either order), the answer last
_STRUCTURE = re.compile(
    r"^\s*<think>(?P<think>.+?)</think>\s*"
    r"(?:(?:<plane>(?P<plane>[^<]+)</plane>|<modality>(?P<modality>[^<]+)</modality>)\s*){0,2}"
    r"<answer>(?P<answer>[^<]+)</answer>\s*$",
    re.DOTALL,
)

INSTRUCTION = (
    "Think about the image first, then answer. Reply exactly as <think>your reasoning</think>"
    "<plane>imaging plane</plane><modality>imaging modality</modality><answer>short answer</answer>; "
    "the plane and modality tags are optional."
)


def tag(text: str, name: str) -> str | None:
    """The stripped content of the first `<name>...</name>` in `text`, or None when absent."""
    m = re.search(rf"<{name}>(.*?)</{name}>", text, re.DOTALL)
    return m.group(1).strip() if m else None


def well_formed(text: str) -> bool:
    """The completion is exactly the structure above, with each optional tag at most once."""
    m = _STRUCTURE.match(text)
    return bool(m) and all(text.count(f"<{t}>") <= 1 for t in TAGS)


def answer_text(text: str) -> str:
    """The answer a structured completion gives (its <answer> tag); a plain completion is its own answer."""
    found = tag(text, "answer")
    return found if found is not None else text.strip()


def reasoning_text(text: str) -> str:
    """What the model wrote as reasoning (its <think> tag); a plain completion is its own reasoning."""
    found = tag(text, "think")
    return found if found is not None else text.strip()
