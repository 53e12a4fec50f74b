"""Polar (closed) questions: which answers they allow, and which of them an answer names. Pure text rules.

    polar_options("Is there a fracture?")             -> ["yes", "no"]
    polar_options("Is the lesion on the left or right?") -> ["left", "right"]
    polar_options("What organ is shown?")               -> None  (open)
    option_of("Yes.", ["yes", "no"])                    -> "yes"

A question is polar when it is in yes/no form (it opens with an auxiliary verb: "Is ...", "Does ...", "Can
...") or offers two options joined by "or" ("... CT or MRI?", "Which side, left or right?"). The options of
an "A or B" question are read around its last " or " (see `either_or_spelled`): B runs to the clause's end
without its leading prepositions / articles, the words A and B share at the end are dropped ("on the left
side or on the right side" -> left / right, "the left lung or the right lung" -> left / right, an answer
"left lung" naming "left"), and A is as many content words before " or " as B has ("a chest x-ray or an
abdominal CT" -> "chest x-ray" / "abdominal ct"). "... or not?" is a yes/no question. A model that answers
an "A or B" question with yes or no (as VQA-RAD's "Is there effusion or edema?" is answered) is scored on
yes / no instead. `option_texts` gives the neutral answer each option is scored on ("Yes." against "No.").
"""

from __future__ import annotations

import re

# the options a question offers and the option an answer names are the scoring's own (medvqa/answers.py),
# so a confidence is always about the option the metrics judged
from medvqa.answers import YES_NO, answer_options, either_or_spelled, option_of
from medvqa.answers import question_options as polar_options

__all__ = ["YES_NO", "answer_options", "either_or_spelled", "option_of", "option_texts", "polar_options"]
_WORD = re.compile(r"[A-Za-z0-9][\w\-]*")


def option_texts(question: str, answer: str) -> dict[str, str] | None:
    """{option: the neutral answer scored for it} for a closed question (None for an open one), in
    `answer_options` order. Every option, the one the model chose and its competitor alike, is scored as
    the same bare answer: the option as the question spells it, cased like the answer (`_cased`), with
    a full stop when the answer ends with one ("There is no fracture." -> {"yes": "Yes.", "no": "No."};
    "ct" -> {"ct": "ct", "mri": "mri"}). The model's own sentence is never rewritten: "Yes, there is no
    fracture." would be a self-contradiction the model gives little probability, inflating the chosen
    option's confidence."""
    options = answer_options(question, answer)
    if options is None:
        return None
    spelled = options if options == YES_NO else (either_or_spelled(question) or options)
    said = answer.strip().rstrip(".")
    stop = "." if answer.rstrip().endswith(".") else ""
    return {o: _cased(sp, said) + stop for o, sp in zip(options, spelled, strict=True)}


def _cased(option: str, said: str) -> str:
    """`option` (as the question spells it) cased like the words `said`: a model that answered in lower
    case ("ct") or capitalised ("Left") gives the other casing little probability, which would say nothing
    about its choice; capitals of the question's own ("MRI", "X-Ray") are kept unless `said` is lower case."""
    if said.islower():
        return option.lower()
    if option[:1].islower() and said[:1].isupper():
        return option[:1].upper() + option[1:]
    return option
