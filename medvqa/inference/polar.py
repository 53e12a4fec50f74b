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

from medvqa.eval.metrics import normalize

YES_NO = ["yes", "no"]
# the openings of yes/no questions
AUXILIARIES = frozenset({"is", "are", "was", "were", "do", "does", "did", "can", "could", "has", "have", "had",
                         "will", "would", "should", "shall", "may", "might", "must"})  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
_PREPOSITIONS = frozenset({"on", "in", "at", "of", "to", "from", "with", "by", "for", "within", "into", "near",
                           "over", "under", "inside", "outside"})  # fmt: skip
_LEADING = _ARTICLES | _PREPOSITIONS  # dropped from the front of B: "or on the right"
# words that end option A when read back from " or ": "Is [this a] CT", "Is [the lesion on the] left"
_STOP = _LEADING | AUXILIARIES | frozenset({"this", "that", "these", "those", "there", "it", "they", "which",
                                            "what", "either", "whether", "and"})  # fmt: skip
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
    """[A, B] for a question offering "A or B", else None (lower case; `either_or_spelled` keeps the case)."""
    spelled = either_or_spelled(question)
    return [o.lower() for o in spelled] if spelled else None


def either_or_spelled(question: str) -> list[str] | None:
    """[A, B] as the question spells them, for a question offering "A or B", else None. B is the words after
    the last " or " up to the clause's end; leading prepositions / articles ("on the right side") and the
    trailing words A and B share ("... left side or ... right side", "left lung or right lung") are
    dropped; A is as many of the content words just before " or " as B has (at most)."""
    at = question.lower().rfind(" or ")
    if at < 0:
        return None
    head = re.split(r"[,:;?!.]", question[:at])[-1]
    tail = re.split(r"[,:;?!.]", question[at + 4 :])[0]
    before, after = _WORD.findall(head), _WORD.findall(tail)
    while after and after[0].lower() in _LEADING:
        after.pop(0)
    if after and after[0].lower() == "not":  # "Is there a lesion or not?"
        return list(YES_NO)
    while len(after) > 1 and before and before[-1].lower() == after[-1].lower():
        before.pop(), after.pop()  # a shared trailing noun: "left side or right side"
    run: list[str] = []
    for word in reversed(before):
        if word.lower() in _STOP or len(run) == len(after):
            break
        run.insert(0, word)
    if not run or not after:
        return None
    a, b = " ".join(run), " ".join(after[: len(run)])
    return None if a.lower() == b.lower() else [a, b]


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
