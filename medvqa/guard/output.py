"""The output guard: an answer that names an alarming finding is not shown to a patient as such; they are
referred instead. Every answer that is shown carries DISCLAIMER.

    alarming("a malignant mass", "What is this?")  # "malignant"
    alarming("yes", "Is it metastatic?")           # "metastatic": a yes to an alarming question says it too
"""

from __future__ import annotations

import re

from medvqa.guard.patterns import TUMOUR_NAMES
from medvqa.guard.text import normalise, variants

ALARMING = re.compile(
    r"\b(cancer\w*|malignan\w*|metasta\w*|tumou?rs?|neoplas\w*|leuk(a)?emia|" + TUMOUR_NAMES + "|"
    r"death|dead|deadly|dying|die|dies|died|fatal|terminal|lethal|aggressive|mortal\w*|hospice|palliative|"
    r"ha?emorrhag\w*|bleed\w*|aneurysm\w*|infarct\w*|stroke|embol\w*|ruptur\w*|necro\w*|"
    r"gangren\w*|sepsis|septic|incurable|inoperable|untreatable|suicid\w*|amputat\w*)\b",
    re.IGNORECASE,
)  # fmt: skip
AFFIRMATIVE = re.compile(r"^\s*(yes|yeah|true|positive|present|likely)\b", re.IGNORECASE)
DISCLAIMER = (
    "This is an automatic description of the image by a research model. It is not a diagnosis or medical "
    "advice; your doctor will explain your results."
)
ALARMING_REFERRAL = (
    "This question is best answered by your doctor, who can look at the whole scan and your history and "
    "explain what it means. Please ask them at your appointment."
)


def alarming(answer: str, question: str = "") -> str:
    """The alarming term the answer names (or affirms, when it is a yes to a question naming one), else ''.
    Both are read as the scope patterns read them: NFKC, and a de-leeted copy (medvqa/guard/text.py)."""
    found = _search(answer)
    if found:
        return found
    if AFFIRMATIVE.match(normalise(answer)):
        return _search(question)
    return ""


def _search(text: str) -> str:
    for form in variants(text):
        found = ALARMING.search(form)
        if found:
            return found.group(0)
    return ""


def with_disclaimer(text: str, disclaimer: str = DISCLAIMER) -> str:
    return f"{text}\n\n{disclaimer}" if disclaimer else text
