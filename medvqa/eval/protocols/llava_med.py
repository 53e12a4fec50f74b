"""`eval.protocol=llava_med` and `llava_med_batch`: LLaVA-Med's scoring scripts, ported rule for rule.

Follows microsoft/LLaVA-Med at commit b9a98a7 ("fix closed accuracy calculation (#35)"):
`llava/eval/run_eval.py` (llava_med) and `llava/eval/run_eval_batch.py` (llava_med_batch), with
`eval_metrics/glossary.py` `normalize_word` and `eval_metrics/evaluate_metrics.py`. Their quirks are kept
on purpose, since a number is only comparable with their tables if it is computed as they compute it:
- the text is lowercased and normalised once by the script, then again inside each metric;
- a punctuation mark is deleted when it stands beside a space anywhere in the text (or the text holds a
  digit,digit), else replaced by a space; periods not before a digit go, but at most 32 per pass (their
  `period_strip.sub("", text, re.UNICODE)` passes re.UNICODE == 32 as the count);
- their contraction map adds apostrophes ("isnt" -> "isn't") and never expands "isn't";
- closed (run_eval.py): right when "yes" or "no" occurs as a substring of the prediction ("unknown",
  "normal" count) and the truth is a substring of it; run_eval_batch.py has no yes/no gate;
- open recall / precision / F1 (`calculate_f1score`) count the candidate's repeats as true positives:
  "lung lung lung" against "lung heart" has recall 3 / (3 + 1) = 0.75;
- exact match (`calculate_exactmatch`) is the reference's distinct words found in the prediction over the
  prediction's word count; `open_acc` (run_eval.py, `calculate_appearance_with_normalization`) maps the
  prediction to the candidate answer sharing the largest share of its distinct words (the first such) and
  asks if that is the truth; run_eval_batch.py's `open_acc` is the truth as a substring of the prediction.
Their candidate list (`--candidate candidate.json`, key "0") is here the split's distinct truths in split
order; pass the same list in the same order to reproduce their `open accuracy` exactly.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Sequence

FOLLOWS = "microsoft/LLaVA-Med@b9a98a7 llava/eval/run_eval.py"
FOLLOWS_BATCH = "microsoft/LLaVA-Med@b9a98a7 llava/eval/run_eval_batch.py"
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")  # fmt: skip
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# theirs is "(?!<=\d)(\.)(?!\d)": the first group is a lookahead that a "." never fails, so only the
# "not before a digit" part acts
_PERIOD = re.compile(r"\.(?!\d)")
_PERIODS_PER_PASS = 32  # re.UNICODE, given as sub's count
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip
_ARTICLES = ("a", "an", "the")
# glossary.py's contraction map as (typed form -> their spelling). Only lowercase keys can match (words are
# lowercased first), so their capitalised keys (Im, Ive, Id've) and identities (let's, she's) are left out.
# Written as one text of key=value words: 120 pairs read better so than as a literal.
_CONTRACTIONS = dict(
    pair.split("=")
    for pair in """aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
    couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
    hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's howd=how'd
    howll=how'll hows=how's isnt=isn't itd=it'd itd've=it'd've it'dve=it'd've itll=it'll maam=ma'am
    mightnt=mightn't mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't
    mustve=must've neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at
    'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've shouldve=should've
    shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
    somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's
    someoned=someone'd someoned've=someone'd've someone'dve=someone'd've someonell=someone'll
    someones=someone's somethingd=something'd somethingd've=something'd've something'dve=something'd've
    somethingll=something'll thats=that's thered=there'd thered've=there'd've there'dve=there'd've
    therere=there're theres=there's theyd=they'd theyd've=they'd've they'dve=they'd've theyll=they'll
    theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've
    werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's whered=where'd
    wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
    whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
    wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
    yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
    you'dve=you'd've youll=you'll youre=you're youve=you've""".split()  # noqa: SIM905
)


def normalize_word(text: str) -> str:
    """glossary.py `normalize_word`, as a pure function (theirs also grows its number map as it goes)."""
    delete = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for p in _PUNCT:
        out = out.replace(p, "" if delete or f"{p} " in text or f" {p}" in text else " ")
    out = _PERIOD.sub("", out, count=_PERIODS_PER_PASS)
    words = [_NUMBERS.get(w, w) for w in out.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES).replace(",", "")


def _words(text: str) -> Counter:
    return Counter(normalize_word(text).split())


def f1_precision_recall(candidate: str, reference: str) -> tuple[float, float, float]:
    """`calculate_f1score`: (f1, precision, recall) on word counts, the candidate's repeats counted."""
    cand, ref = _words(candidate), _words(reference)
    if not cand or not ref:
        return 0.0, 0.0, 0.0
    tp = sum(n for w, n in cand.items() if w in ref)
    fp = sum(n for w, n in cand.items() if w not in ref)
    fn = sum(n for w, n in ref.items() if w not in cand)
    if tp == 0:
        return 0.0, 0.0, 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall), precision, recall


def exact_match(candidate: str, reference: str) -> float:
    """`calculate_exactmatch`: distinct reference words present in the candidate / the candidate's words."""
    cand, ref = _words(candidate), _words(reference)
    total = sum(cand.values())
    return sum(1 for w in ref if w in cand) / total if total else 0.0


def appearance(prediction: str, reference: str, candidates: Sequence[str]) -> float:
    """`calculate_appearance_with_normalization`: 1 when the candidate answer covering the largest share of
    its distinct words with the prediction's words (the first of equals) is the reference."""
    said, truth = set(_words(prediction)), normalize_word(reference)
    best, best_share = None, -1.0
    for candidate in candidates:
        norm = normalize_word(str(candidate))
        words = set(norm.split())
        share = sum(1 for w in said if w in words) / len(words) if words else 0.0
        if share > best_share:
            best, best_share = norm, share
    return float(best == truth)


def sentence_bleus(prediction: str, truth: str) -> dict[str, float]:
    """The four nltk `sentence_bleu` scores run_eval.py averages: cumulative 4-gram and the 1/2/3-gram
    precisions alone, on whitespace words of the once-normalised texts."""
    from nltk.translate.bleu_score import sentence_bleu

    ref, hyp = [truth.lower().split()], prediction.lower().split()
    weights = {"sentence_bleu": (0.25, 0.25, 0.25, 0.25), "sentence_bleu_1": (1, 0, 0, 0),
               "sentence_bleu_2": (0, 1, 0, 0), "sentence_bleu_3": (0, 0, 1, 0)}  # fmt: skip
    with warnings.catch_warnings():  # nltk warns on zero n-gram counts; theirs silences all warnings
        warnings.simplefilter("ignore")
        return {k: float(sentence_bleu(ref, hyp, weights=w)) for k, w in weights.items()}


def row_scores(text: str, truth: str, answer_type: str, candidates: Sequence[str], gate: bool = True) -> dict:
    """One question's scores: `gate=True` is run_eval.py, `gate=False` run_eval_batch.py."""
    pred, gt = normalize_word(text.lower()), normalize_word(truth.lower())
    f1, precision, recall = f1_precision_recall(pred, gt)
    if answer_type == "closed":
        hit = gt in pred and (not gate or "yes" in pred or "no" in pred)
        return {"closed_acc": float(hit)} | ({} if gate else {"closed_recall": recall})
    open_acc = appearance(pred, gt, candidates) if gate else float(gt in pred)
    return {"open_recall": recall, "open_precision": precision, "token_f1": f1,
            "exact_match": exact_match(pred, gt), "open_acc": open_acc} | sentence_bleus(pred, gt)  # fmt: skip


def _text(row: dict) -> str:
    return str(row.get("completion", row["prediction"]))


def _candidates(rows: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(str(r["answer"]) for r in rows))


def score_rows(rows: Sequence[dict]) -> list[dict[str, float]]:
    """run_eval.py's per-question scores of each row's whole generation (`completion`, else `prediction`)."""
    candidates = _candidates(rows)
    return [row_scores(_text(r), str(r["answer"]), r["answer_type"], candidates) for r in rows]


def score_rows_batch(rows: Sequence[dict]) -> list[dict[str, float]]:
    """run_eval_batch.py's per-question scores (no yes/no gate, substring open accuracy)."""
    return [row_scores(_text(r), str(r["answer"]), r["answer_type"], (), gate=False) for r in rows]
