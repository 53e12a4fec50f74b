"""`eval.protocol=medevalkit`: MedEvalKit's (Lingshu's harness) VQA-RAD / PathVQA / SLAKE rules, ported.

Follows alibaba-damo-academy/MedEvalKit at commit 9b12e3b: `utils/VQA_RAD/VQA_RAD.py`,
`utils/PATH_VQA/PATH_VQA.py` and `utils/SLAKE/SLAKE.py` `cal_metrics`, `utils/utils.py` (`parse_response`,
`judge_judgement`, `judge_close_end_vqa`, `judge_open_end_vqa`, `calculate_f1`, `bleu`) and
mathruler's `extract_boxed_content`. As they do:
- the response is first cut to its last `\\boxed{...}` (balanced braces), else to its `<answer>` tags'
  contents (every pair, joined by spaces), then `parse_response` does so again on the lowercased text
  and keeps what follows the last of "**answer**:", "answer is", "answer:", "final answer", ...;
- which questions are closed: on VQA-RAD and PathVQA (every source but SLAKE) those whose truth is yes or
  no; on SLAKE those its `answer_type` marks CLOSED;
- yes/no: right when exactly one of "yes" / "no" occurs in the response as a substring (so "unknown"
  says no) and the truth is a substring of it; SLAKE's other closed answers: the response, without
  line breaks and periods, equals the lowercased truth;
- open: `exact_match` is string equality of the parsed response and the truth; `token_f1`, `open_precision`
  and `open_recall` are on word *sets*; `sentence_bleu_1..4` are nltk's cumulative sentence BLEU on
  `text.lower().replace(".", " .").split(" ")` tokens; `accuracy` is closed right or open exact, per row.
Their metrics.json labels the set scores crosswise (it unpacks `calculate_f1`'s (f1, precision, recall)
as (precision, recall, f1)): its "f1" is `open_recall` here, "precision" is `token_f1`, "recall" is
`open_precision`. An empty open response crashes their script (ROUGE refuses it); here it scores 0.
ROUGE (their `rouge` package scores) is not ported.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

FOLLOWS = "alibaba-damo-academy/MedEvalKit@9b12e3b utils/{VQA_RAD,PATH_VQA,SLAKE} cal_metrics"
_ANSWER_PATTERNS = ("**answer**:", "**answer**", "*answer*:", "**answer:**", "answer is", "answer:",
                    "答案:", "final answer", "final answer is")  # fmt: skip


def boxed(text: str) -> str:
    """mathruler's `extract_boxed_content`: the last `\\boxed{...}` with balanced braces, stripped, or the
    string "None" (their sentinel)."""
    start = text.rfind("\\boxed{")
    if start == -1:
        return "None"
    content, depth = text[start + len("\\boxed{") :], 0
    for i, char in enumerate(content):
        depth += (char == "{") - (char == "}")
        if depth == -1:
            return content[:i].strip()
    return "None"


def tagged(text: str, tag: str = "answer") -> str:
    """`extract(text, "answer")`: every <answer>...</answer> span's contents joined by spaces and stripped;
    the text itself when there is none (or all are empty); "" for an empty text."""
    if not text:
        return ""
    start_tag, end_tag = f"<{tag}>", f"</{tag}>"
    parts, start = [], text.find(start_tag)
    while start != -1:
        end = text.find(end_tag, start + len(start_tag))
        if end == -1:
            break
        parts.append(text[start + len(start_tag) : end] + " ")
        start = text.find(start_tag, end + len(end_tag))
    return "".join(parts).strip() or text


def first_extraction(response: str) -> str:
    """cal_metrics' own first cut: `\\boxed{}` content, else `<answer>` content, else the response."""
    if boxed(response) != "None":
        return boxed(response)
    return tagged(response) if "<answer>" in response else response


def parse_response(response: str) -> str:
    response = response.lower()
    if "boxed" in response:
        response = boxed(response)  # "None" when the word appears without a \boxed{...}: theirs too
    elif "<answer>" in response:
        response = tagged(response)
    for pattern in _ANSWER_PATTERNS:
        if pattern in response:
            response = response.split(pattern)[-1]
    return response


def judge_yes_no(answer: str, response: str) -> bool:
    response = parse_response(response).replace("\n", "").replace(".", "")
    return (("yes" in response) != ("no" in response)) and answer.lower() in response


def judge_closed(answer: str, response: str) -> bool:
    return parse_response(response).replace("\n", "").replace(".", "") == answer.lower()


def _tokens(text: str) -> list[str]:
    return text.lower().replace(".", " .").split(" ")


def open_scores(answer: str, response: str) -> dict[str, float]:
    """`judge_open_end_vqa` (without ROUGE), keys named for what each value is."""
    from nltk.translate.bleu_score import sentence_bleu

    answer, response = answer.lower(), parse_response(response)
    with warnings.catch_warnings():  # nltk warns on zero n-gram counts
        warnings.simplefilter("ignore")
        bleus = {f"sentence_bleu_{n}": float(sentence_bleu([_tokens(answer)], _tokens(response),
                                                           weights=[1 / n] * n)) for n in range(1, 5)}  # fmt: skip
    said, truth = set(response.lower().split()), set(answer.lower().split())
    shared = len(said & truth)
    precision = shared / len(said) if said and truth else 0.0
    recall = shared / len(truth) if said and truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    exact = float(response == answer)
    return {"exact_match": exact, "token_f1": f1, "open_precision": precision, "open_recall": recall,
            "accuracy": exact} | bleus  # fmt: skip


def row_scores(response: str, answer: str, answer_type: str, source: str) -> dict[str, float]:
    """One question as the dataset's cal_metrics scores it (`source` "slake" picks SLAKE's rules)."""
    response = first_extraction(response)
    if source == "slake":  # SLAKE.py: no lower/strip of the truth or the response before judging
        if answer_type != "closed":
            return open_scores(answer, response)
        right = judge_yes_no(answer, response) if answer in ("yes", "no") else judge_closed(answer, response)
        return {"closed_acc": float(right), "accuracy": float(right)}
    answer, response = answer.lower().strip(), response.lower().strip()
    if answer in ("yes", "no"):
        right = judge_yes_no(answer, response)
        return {"closed_acc": float(right), "accuracy": float(right)}
    return open_scores(answer, response)


def score_rows(rows: Sequence[dict]) -> list[dict[str, float]]:
    """Each row's whole generation (`completion`, else `prediction`) scored by its dataset's rule."""
    return [row_scores(str(r.get("completion", r["prediction"])), str(r["answer"]), r["answer_type"],
                       str(r.get("source", ""))) for r in rows]  # fmt: skip
