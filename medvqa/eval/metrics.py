"""The standard medical-VQA scoring protocol (LLaVA-Med style), as pure functions plus a torchmetrics wrapper.

All scores are fractions in [0, 1]; papers usually print them times 100.
A closed question is scored on its answer (`closed_answer`): the `<answer>` tag when the completion has one,
else its first sentence, so text the model adds after answering neither helps nor hurts. A closed answer
that names both sides of a polar pair (yes and no, left and right, ...) is a hedge and wrong.
- closed_acc:   normalised ground truth is a substring of the normalised answer (the protocol's rule, the
                paper-comparable number; it still counts "normal" as "no"), hedges wrong.
- closed_exact: normalised answer equals the normalised ground truth (strict: "normal" is not "no"); the
                monitor of the DPO and GRPO stages, which can learn to game the substring rule.
- hedged:       share of closed questions answered with both polar answers.
- open_recall:  shared words / ground-truth words, over open questions.
- token_f1:     word-multiset F1 over open questions.
- exact_match:  normalised exact match over all questions.
"""

from __future__ import annotations

import re
from collections import Counter

import torch
from torchmetrics import Metric

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "aren't": "are not", "can't": "cannot", "couldn't": "could not", "didn't": "did not",
    "doesn't": "does not", "don't": "do not", "hasn't": "has not", "haven't": "have not",
    "isn't": "is not", "it's": "it is", "shouldn't": "should not", "there's": "there is",
    "wasn't": "was not", "weren't": "were not", "won't": "will not", "wouldn't": "would not",
}  # fmt: skip
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$~|:']")
_NUMBER_WITH_COMMAS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")
_PERIOD_NOT_DECIMAL = re.compile(r"\.(?!\d)")
# the end of a sentence: . ! ? ; or a line break, but not the point inside a number such as 3.5
_SENTENCE_END = re.compile(r"[!?;\n]|\.(?!\d)|(?<!\d)\.")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)  # as medvqa/rewards/tags.py writes it
# closed answers that exclude each other: an answer naming both sides of one pair says nothing
POLAR_PAIRS = (("yes", "no"), ("left", "right"), ("present", "absent"), ("normal", "abnormal"),
               ("true", "false"), ("positive", "negative"), ("benign", "malignant"),
               ("increased", "decreased"), ("single", "multiple"))  # fmt: skip


def normalize(text: str) -> str:
    """Lowercase, expand contractions, strip punctuation, map number words, drop articles and commas."""
    text = str(text).lower().strip().replace("\n", " ").replace("\t", " ")
    text = " ".join(_CONTRACTIONS.get(w, w) for w in text.split())
    text = text.replace(",", "") if _NUMBER_WITH_COMMAS.match(text) else _PUNCT.sub(" ", text)
    text = _PERIOD_NOT_DECIMAL.sub("", text)
    words = [_NUMBER_WORDS.get(w, w) for w in text.split()]
    return " ".join(w for w in words if w not in _ARTICLES).replace(",", "")


def closed_substring(pred: str, truth: str) -> float:
    """1.0 when the normalised truth occurs inside the normalised prediction (protocol rule)."""
    t, p = normalize(truth), normalize(pred)
    return float(bool(t) and t in p)


def closed_answer(completion: str) -> str:
    """The answer a completion gives to a closed question: its `<answer>` tag's text when it has one, and
    of that (or of the plain completion) the first sentence, stripped."""
    tagged = _ANSWER_TAG.search(completion)
    text = tagged.group(1) if tagged else completion
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0].strip()


def hedged(pred: str, truth: str) -> bool:
    """The answer names both sides of a polar pair (as whole words, normalised) that the truth does not."""
    said, meant = set(normalize(pred).split()), set(normalize(truth).split())
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


def score_item(pred: str, truth: str, answer_type: str) -> dict[str, float]:
    """Per-question scores, as written to predictions.jsonl. Closed questions are scored on
    `closed_answer(pred)`, a hedge scores 0; open ones on the whole prediction (the protocol's recall)."""
    if answer_type == "closed":
        answer = closed_answer(pred)
        hedge = hedged(answer, truth)
        exact = 0.0 if hedge else exact_match(answer, truth)
        acc = 0.0 if hedge else closed_substring(answer, truth)
        return {"exact_match": exact, "closed_acc": acc, "closed_exact": exact, "hedged": float(hedge)}
    return {
        "exact_match": exact_match(pred, truth),
        "open_recall": open_recall(pred, truth),
        "token_f1": token_f1(pred, truth),
    }


class VQAScores(Metric):
    """Accumulates the protocol's scores over batches of decoded predictions; syncs by summing."""

    full_state_update = False
    KEYS = ("closed_acc", "closed_exact", "hedged", "open_recall", "token_f1", "exact_match")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for key in self.KEYS:
            self.add_state(f"{key}_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for n in ("n_closed", "n_open", "n_all", "n_skipped"):
            self.add_state(n, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: list[str], truths: list[str], answer_types: list[str]) -> None:
        for pred, truth, kind in zip(preds, truths, answer_types, strict=True):
            for key, value in score_item(pred, truth, kind).items():
                setattr(self, f"{key}_sum", getattr(self, f"{key}_sum") + value)
            self.n_all += 1
            if kind == "closed":
                self.n_closed += 1
            else:
                self.n_open += 1

    def skip(self, n: int) -> None:
        """Count `n` questions left unscored (unreadable images, data.on_bad_sample=skip)."""
        self.n_skipped += int(n)

    def compute(self) -> dict[str, torch.Tensor]:
        """The scores (fractions), plus `scored` and `skipped`: the questions behind them and those left out."""
        closed, open_ = self.n_closed, self.n_open
        denominators = {"closed_acc": closed, "closed_exact": closed, "hedged": closed, "open_recall": open_,
                        "token_f1": open_, "exact_match": self.n_all}  # fmt: skip
        scores = {
            key: (getattr(self, f"{key}_sum") / denominators[key].clamp(min=1)).float() for key in self.KEYS
        }
        return scores | {"scored": self.n_all.float(), "skipped": self.n_skipped.float()}
