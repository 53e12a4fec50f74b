"""Polar (closed) questions: which answers they allow, and which of them an answer names. Pure text rules.

    polar_options("Is there a fracture?")             -> ["yes", "no"]
    polar_options("Is the lesion on the left or right?") -> ["left", "right"]
    polar_options("What organ is shown?")               -> None  (open)
    option_of("Yes.", ["yes", "no"])                    -> "yes"

A question is polar when it is in yes/no form (it opens with an auxiliary verb: "Is ...", "Does ...", "Can
...") or offers two options joined by "or" ("... CT or MRI?", "Which side, left or right?"). The options of
an "A or B" question are the single words on either side of its last " or " (articles dropped): the usual
VQA-RAD / SLAKE forms (left or right, CT or MRI, axial or coronal, male or female) are one word each;
multi-word options ("the left lung or the right lung") are read as their nearest words ("lung", "right")
and are not supported. "... or not?" is a yes/no question. A model that answers an "A or B" question with
yes or no (as VQA-RAD's "Is there effusion or edema?" is answered) is scored on yes / no instead.
"""

from __future__ import annotations

import re

from medvqa.eval.metrics import normalize

YES_NO = ["yes", "no"]
# the openings of yes/no questions
AUXILIARIES = frozenset({"is", "are", "was", "were", "do", "does", "did", "can", "could", "has", "have", "had",
                         "will", "would", "should", "shall", "may", "might", "must"})  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
_WORD = re.compile(r"[A-Za-z0-9][\w\-]*")


def polar_options(question: str) -> list[str] | None:
    """The options a polar question allows (lower case, in the question's order), or None for an open one."""
    text = question.strip()
    choice = _either_or(text)
    if choice:
        return choice
    first = text.split(maxsplit=1)[0].lower().strip(",.:;") if text.split() else ""
    return list(YES_NO) if first in AUXILIARIES else None


def _either_or(question: str) -> list[str] | None:
    """[A, B] for a question offering "A or B", else None."""
    lower = question.lower()
    at = lower.rfind(" or ")
    if at < 0:
        return None
    before = [w for w in _WORD.findall(lower[:at]) if w not in _ARTICLES]
    after = [w for w in _WORD.findall(lower[at + 4 :]) if w not in _ARTICLES]
    if not before or not after or before[-1] == after[0]:
        return None
    if after[0] == "not":  # "Is there a lesion or not?"
        return list(YES_NO)
    return [before[-1], after[0]]


def answer_options(question: str, answer: str) -> list[str] | None:
    """The options the model's `answer` is scored among: the question's polar options, or yes / no when an
    "A or B" question was answered yes or no (see the module docstring); None for an open question."""
    options = polar_options(question)
    if options and options != YES_NO and option_of(answer, options) is None and option_of(answer, YES_NO):
        return list(YES_NO)
    return options


def option_of(answer: str, options: list[str]) -> str | None:
    """The option `answer` names: the one equal to the normalised answer, else the one its first word is
    ("yes, there is a lesion" names "yes"); None when it names none of them."""
    said = normalize(answer)
    by_norm = {normalize(o): o for o in options}
    if said in by_norm:
        return by_norm[said]
    first = said.split(maxsplit=1)[0] if said else ""
    return by_norm.get(first)


def cased_like(options: list[str], answer: str) -> list[str]:
    """The options capitalised as the answer is ("Yes" -> ["Yes", "No"]): a model trained on capitalised
    answers gives the lower-case forms little probability, which would say nothing about its choice."""
    if answer[:1].isupper():
        return [o[:1].upper() + o[1:] for o in options]
    return list(options)
