"""The ground floor of answer reading: normalisation, the parsed answer, the options a closed question
offers and the option an answer names. Imported by the metrics (medvqa/eval/metrics.py), the GRPO
`answer_match` reward, mined DPO pairs, polar confidence (medvqa/inference/) and the guard, so a question
is never right for one of them and wrong for another. It imports nothing from medvqa.

    parsed_answer("<think>..</think><answer>No.</answer>")      -> "No."
    parsed_answer("Approx. 3 cm. It is benign.")              -> "Approx. 3 cm"
    question_options("Is there a fracture?")                    -> ["yes", "no"]
    question_options("Is this a CT or an MRI?")                 -> ["CT", "MRI"]  (as spelled, see below)
    named_options("There is no fracture.", ["yes", "no"])       -> ["no"]
    named_options("Eyes are visible", ["yes", "no"])            -> []
    closed_verdict("yes or no", "no", "Is it normal?")           -> Verdict(correct=False, hedged=True)

The closed rule (medvqa's default protocol, docs/evaluation.md): a yes/no question (its truth is yes or no)
is right when the parsed answer names exactly one of the whole words yes / no and it is the truth's; a
question that offers options ("CT or MRI?", "left or right?") is right when the answer names exactly one of
the question's options and it is the truth's; any other closed question falls back to strict equality of
the normalised answer and truth. Naming two options is a hedge: wrong, and counted as `hedged`.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
_CONTRACTIONS = {
    "aren't": "are not", "can't": "cannot", "couldn't": "could not", "didn't": "did not",
    "doesn't": "does not", "don't": "do not", "hasn't": "has not", "haven't": "have not",
    "isn't": "is not", "it's": "it is", "shouldn't": "should not", "there's": "there is",
    "wasn't": "was not", "weren't": "were not", "won't": "will not", "wouldn't": "would not",
}  # fmt: skip
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$~|:']")
_NUMBER_WITH_COMMAS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")
_PERIOD_NOT_DECIMAL = re.compile(r"\.(?!\d)")
# candidate sentence ends: ! ? ; a line break, or a point that is not inside a number such as 3.5
_SENTENCE_END = re.compile(r"[!?;\n]|\.(?!\d)|(?<!\d)\.")
# words whose point does not end a sentence ("Dr. Smith", "Approx. 3 cm", "e.g. the liver"); "No." is an
# answer, so "no" is not among them
ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "prof", "st", "approx", "appr", "e.g", "i.e", "eg", "ie",
                           "vs", "etc", "fig", "figs", "cf", "ca", "resp", "incl", "vol", "sq"})  # fmt: skip
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)  # as medvqa/rewards/tags.py writes it
# closed answers that exclude each other: naming both sides of one pair says nothing (the hedge rule of
# the strict-equality fallback, where the question offers no options of its own)
POLAR_PAIRS = (("yes", "no"), ("left", "right"), ("present", "absent"), ("normal", "abnormal"),
               ("true", "false"), ("positive", "negative"), ("benign", "malignant"),
               ("increased", "decreased"), ("single", "multiple"))  # fmt: skip

YES_NO = ["yes", "no"]
# the openings of yes/no questions
AUXILIARIES = frozenset({"is", "are", "was", "were", "do", "does", "did", "can", "could", "has", "have", "had",
                         "will", "would", "should", "shall", "may", "might", "must"})  # fmt: skip
_PREPOSITIONS = frozenset({"on", "in", "at", "of", "to", "from", "with", "by", "for", "within", "into", "near",
                           "over", "under", "inside", "outside"})  # fmt: skip
_LEADING = _ARTICLES | _PREPOSITIONS  # dropped from the front of B: "or on the right"
# words that end option A when read back from " or ": "Is [this a] CT", "Is [the lesion on the] left"
_STOP = _LEADING | AUXILIARIES | frozenset({"this", "that", "these", "those", "there", "it", "they", "which",
                                            "what", "either", "whether", "and"})  # fmt: skip
_WORD = re.compile(r"[A-Za-z0-9][\w\-]*")


def normalize(text: str) -> str:
    """Lowercase, expand contractions, strip punctuation, map number words, drop articles and commas."""
    text = str(text).lower().strip().replace("\n", " ").replace("\t", " ")
    text = " ".join(_CONTRACTIONS.get(w, w) for w in text.split())
    text = text.replace(",", "") if _NUMBER_WITH_COMMAS.match(text) else _PUNCT.sub(" ", text)
    text = _PERIOD_NOT_DECIMAL.sub("", text)
    words = [_NUMBER_WORDS.get(w, w) for w in text.split()]
    return " ".join(w for w in words if w not in _ARTICLES).replace(",", "")


def first_sentence(text: str) -> str:
    """`text` up to its first sentence end, stripped; a point after an abbreviation ("Dr.", "approx.",
    "e.g.") or inside a number ("3.5") does not end it."""
    text = text.strip()
    for end in _SENTENCE_END.finditer(text):
        if end.group() == "." and _is_abbreviation(text, end.start()):
            continue
        return text[: end.start()].strip()
    return text


def _is_abbreviation(text: str, point: int) -> bool:
    """The point at `point` belongs to an abbreviation: the word around it ("Dr.", "e.g.") is one."""
    start = max(text.rfind(" ", 0, point), text.rfind("\n", 0, point)) + 1
    end = next((i for i in range(point, len(text)) if text[i].isspace()), len(text))
    return text[start:end].lower().strip(".,;:()\"'") in ABBREVIATIONS


def parsed_answer(completion: str) -> str:
    """The answer a completion gives: its `<answer>` tag's text when it has one, and of that (or of the
    plain completion) the first sentence, stripped. Closed questions are scored on it, so text the model
    adds after answering neither helps nor hurts."""
    tagged = _ANSWER_TAG.search(completion)
    return first_sentence(tagged.group(1) if tagged else completion)


def question_options(question: str) -> list[str] | None:
    """The options a polar question allows (lower case, in the question's order), or None for an open
    one. A question is polar when it is in yes/no form (it opens with an auxiliary verb: "Is ...", "Does
    ...") or offers two options joined by "or" (see `either_or_spelled`); "... or not?" is yes/no."""
    text = question.strip()
    spelled = either_or_spelled(text)
    if spelled:
        return [o.lower() for o in spelled]
    first = text.split(maxsplit=1)[0].lower().strip(",.:;") if text.split() else ""
    return list(YES_NO) if first in AUXILIARIES else None


def either_or_spelled(question: str) -> list[str] | None:
    """[A, B] as the question spells them, for a question offering "A or B", else None (["yes", "no"] for
    "... or not?"). B is the words after the last " or " up to the clause's end; leading prepositions /
    articles ("on the right side") and the trailing words A and B share ("... left side or ... right side",
    "left lung or right lung") are dropped; A is as many of the content words just before " or " as B has
    (at most)."""
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


def named_options(answer: str, options: list[str]) -> list[str]:
    """The options `answer` names, in `options` order: each option's normalised words found as a whole-word
    run in the normalised answer ("There is no fracture" names "no", "Eyes are visible" names nothing). An
    option whose every occurrence lies inside the occurrence of a longer named option is not counted
    ("CT with contrast" names that option, not also "CT"); options that share words are matched on the
    words they do not share ("Left" names "left lung" of "left lung" / "right lung")."""
    said = normalize(answer).split()
    words = {o: normalize(o).split() for o in options}
    shared = set.intersection(*(set(w) for w in words.values())) if words else set()
    # options that share words ("left lung" / "right lung") are told apart by the words they do not share
    keys = {o: [x for x in w if x not in shared] for o, w in words.items()}
    keys = keys if all(keys.values()) else words
    spans = {o: _runs(said, keys[o]) for o in options}
    named = []
    for option, found in spans.items():
        inside = [
            s for s in found if any(_within(s, t) for o2, f2 in spans.items() if o2 != option for t in f2)
        ]
        if found and len(inside) < len(found):
            named.append(option)
    return named


def _runs(words: list[str], target: list[str]) -> list[tuple[int, int]]:
    if not target:
        return []
    n = len(target)
    return [(i, i + n) for i in range(len(words) - n + 1) if words[i : i + n] == target]


def _within(inner: tuple[int, int], outer: tuple[int, int]) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1] and (outer[1] - outer[0]) > (inner[1] - inner[0])


def answer_options(question: str, answer: str) -> list[str] | None:
    """The options the model's `answer` is judged among: the question's options, or yes / no when an
    "A or B" question was answered yes or no (VQA-RAD's "Is there effusion or edema?" is answered so);
    None for an open question."""
    options = question_options(question)
    if options and options != YES_NO and not named_options(answer, options) and named_options(answer, YES_NO):
        return list(YES_NO)
    return options


def option_of(answer: str, options: list[str]) -> str | None:
    """The one option `answer` names, or None when it names none or more than one."""
    named = named_options(answer, options)
    return named[0] if len(named) == 1 else None


class Verdict(NamedTuple):
    correct: bool
    hedged: bool


def closed_verdict(answer: str, truth: str, question: str = "") -> Verdict:
    """Is the (parsed) `answer` to a closed question right? The options judged among are yes / no when the
    truth is yes or no, else the question's own options when the truth is one of them; the answer is right
    when it names exactly one of them, the truth's, and a hedge when it names several. Otherwise (no
    options, or a truth outside them) strict equality after normalisation, and a hedge is an answer naming
    both sides of a polar pair that the truth does not."""
    options = _options_for(truth, question)
    if options:
        named = named_options(answer, options)
        truths = named_options(truth, options)
        return Verdict(len(named) == 1 and named == truths, len(named) > 1)
    hedge = _pair_hedge(answer, truth)
    return Verdict(not hedge and normalize(answer) == normalize(truth), hedge)


def _options_for(truth: str, question: str) -> list[str] | None:
    if normalize(truth) in YES_NO:
        return list(YES_NO)
    options = question_options(question) if question else None
    if options and options != YES_NO and len(named_options(truth, options)) == 1:
        return options
    return None


def _pair_hedge(answer: str, truth: str) -> bool:
    said, meant = set(normalize(answer).split()), set(normalize(truth).split())
    return any(a in said and b in said and not (a in meant and b in meant) for a, b in POLAR_PAIRS)


def exact_match(pred: str, truth: str) -> float:
    return float(normalize(pred) == normalize(truth))


def open_recall(pred: str, truth: str) -> float:
    """Shared word count / ground-truth word count, on word multisets; 0 when either side is empty."""
    p, t = Counter(normalize(pred).split()), Counter(normalize(truth).split())
    if not p or not t:
        return 0.0
    return sum((p & t).values()) / sum(t.values())


def token_f1(pred: str, truth: str) -> float:
    p, t = Counter(normalize(pred).split()), Counter(normalize(truth).split())
    shared = sum((p & t).values())
    if not p or not t or shared == 0:
        return 0.0
    precision, recall = shared / sum(p.values()), shared / sum(t.values())
    return 2 * precision * recall / (precision + recall)
