"""`eval.protocol=lmms_eval`: lmms-eval's SLAKE task scoring (`lmms_eval/tasks/slake/utils.py`), ported.

Follows lmms-eval 0.7.3 (PyPI) `slake_process_results` / `normalize_answer`: a question is right when the
normalised generation equals the normalised truth. Normalising: strip and lowercase; drop parentheses with
their contents (ASCII and full-width); every ASCII and Chinese punctuation mark becomes a space; spaces
collapse; "x ray" / "xray" -> "xray"; whole-answer yes synonyms (yes, yeah, yep, true, and 是 是的 有 包含 可以
能 会 正常) -> "yes", no synonyms (no, nope, false, and 否 不是 没有 无 不包含 不能 不会 不可以 不正常 异常) -> "no".
Per row: `accuracy` (their slake_accuracy), and `closed_acc` / `open_acc` by the row's answer type (their
slake_closed_accuracy / slake_open_accuracy). tests/eval/test_protocols_lmms_eval.py checks this against
lmms-eval's own function, installed from PyPI, on the pairs in tests/eval/fixtures/lmms_eval_slake_pairs.json.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

FOLLOWS = "lmms-eval==0.7.3 lmms_eval/tasks/slake/utils.py slake_process_results"
_YES = {"yes", "yeah", "yep", "true", "是", "是的", "有", "包含", "可以", "能", "会", "正常"}  # fmt: skip
_NO = {"no", "nope", "false", "否", "不是", "没有", "无", "不包含", "不能", "不会", "不可以", "不正常", "异常"}  # fmt: skip
_ZH_PUNCTUATION = "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～、，。；：《》？【】（）"
_TO_SPACE = str.maketrans({c: " " for c in string.punctuation + _ZH_PUNCTUATION})
_PARENS = (re.compile(r"\([^)]*\)"), re.compile(r"（[^）]*）"))


def normalize_answer(answer) -> str:
    """Their `normalize_answer` (None -> "")."""
    text = "" if answer is None else str(answer)
    text = text.strip().lower()
    for parens in _PARENS:
        text = parens.sub(" ", text)
    text = " ".join(text.translate(_TO_SPACE).split())
    if text in ("x ray", "xray"):
        text = "xray"
    return "yes" if text in _YES else "no" if text in _NO else text


def row_scores(text: str, truth: str, answer_type: str) -> dict[str, float]:
    right = float(normalize_answer(text) == normalize_answer(truth))
    return {"accuracy": right, ("closed_acc" if answer_type == "closed" else "open_acc"): right}


def score_rows(rows: Sequence[dict]) -> list[dict[str, float]]:
    """Each row's whole generation (`completion`, else `prediction`), as lmms-eval scores its response."""
    return [row_scores(str(r.get("completion", r["prediction"])), str(r["answer"]), r["answer_type"])
            for r in rows]  # fmt: skip
