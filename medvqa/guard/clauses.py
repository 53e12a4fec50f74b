"""A question cut into the clauses the scope guard judges one by one, so a health worry joined to an
allowed question ("What imaging modality was used and does it look bad?") cannot ride in on the allowed
part's similarity to the training questions.

    clauses("In which plane was this image taken? Also, is it healthy?")
    # ["In which plane was this image taken?", "is it healthy?"]
    clauses("Is there a mass and an effusion?")     # ["Is there a mass and an effusion?"]: one clause

Cuts: sentence ends (. ? ! followed by a space), ";", a leading or joining "also", and "and" (or ", and")
only where a new clause begins after it: an auxiliary verb, a wh-word or a pronoun ("and does it ...",
"and am I ...", "and what ..."). "and" between two nouns ("a mass and an effusion", "the lungs and the
heart") is not a cut, so such in-scope conjunctions are judged whole, as before. No parser does this
without a model download; the rule is a dozen lines and its cases are tested (tests/guard/test_clauses.py).
"""

from __future__ import annotations

import re

# words that open a clause of their own after "and": auxiliaries, wh-words, pronouns, imperatives
STARTERS = (
    "is|are|was|were|am|do|does|did|can|could|will|would|should|shall|may|might|must|has|have|had|"
    "what|which|who|whom|whose|where|when|why|how|i|i'm|im|it|it's|its|this|that|these|those|there|"
    "my|me|you|tell|please|give|say|explain"
)
_SENTENCES = re.compile(r"(?<=[.?!])\s+|\s*;\s*")
_AND = re.compile(rf",?\s+(?:and\s+)?also\b,?\s*|,?\s+and\s+(?=(?:{STARTERS})\b)", re.IGNORECASE)
_LEAD = re.compile(r"^\s*(?:and|also|but|so)\b[,\s]*", re.IGNORECASE)


def clauses(question: str) -> list[str]:
    """The question's clauses in order, each stripped of a leading "and" / "also" / "but" / "so"; those
    without a letter are dropped. A question with no cut is one clause: itself (stripped)."""
    out = []
    for sentence in _SENTENCES.split(question or ""):
        for part in _AND.split(sentence):
            part = _LEAD.sub("", part).strip(" ,")
            if any(c.isalpha() for c in part):
                out.append(part)
    return out or [(question or "").strip()]
