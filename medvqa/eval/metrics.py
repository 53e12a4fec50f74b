"""medvqa's default scoring protocol (`eval.protocol=medvqa`), as pure functions plus a torchmetrics wrapper.

All scores are fractions in [0, 1]; papers usually print them times 100. Answers are read by
medvqa/answers.py, the one home of answer parsing (normalisation, the parsed answer, the option it names).
A closed question is scored on its parsed answer (`parsed_answer`): the `<answer>` tag when the completion
has one, else its first sentence, so text the model adds after answering neither helps nor hurts.
- closed_acc:   the strict closed rule (`closed_verdict`): a yes/no question is right when the answer names
                exactly one of the whole words yes / no and it is the truth's; a question offering options
                ("CT or MRI?") when it names exactly one of them, the truth's; else strict equality.
                "Unknown" and "normal" are not "no"; "There is no fracture." is.
- closed_exact: normalised answer equals the normalised ground truth (terse answers only); the monitor of
                the DPO and GRPO stages and the closed part of their `answer_match` reward.
- hedged:       share of closed questions whose answer names several of the options.
- open_recall:  shared words / ground-truth words, over open questions.
- token_f1:     word-multiset F1 over open questions.
- exact_match:  normalised exact match over all questions.
The character-substring rule of LLaVA-Med's scripts lives only in the published protocols that use it
(medvqa/eval/evaluation.py `apply_protocol`).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from medvqa.answers import closed_verdict, exact_match, normalize, open_recall, parsed_answer, token_f1

__all__ = ["VQAScores", "exact_match", "normalize", "open_recall", "parsed_answer", "score_item", "token_f1"]


def score_item(pred: str, truth: str, answer_type: str, question: str = "") -> dict[str, float]:
    """Per-question scores, as written to predictions.jsonl under `scores`. Closed questions are scored on
    `parsed_answer(pred)` by `closed_verdict` (the question gives the options it offers; without it only
    yes / no truths are judged by the option named, others by strict equality), a hedge scores 0; open
    ones on the whole prediction (the protocol's recall)."""
    if answer_type == "closed":
        answer = parsed_answer(pred)
        verdict = closed_verdict(answer, truth, question)
        exact = 0.0 if verdict.hedged else exact_match(answer, truth)
        return {"exact_match": exact, "closed_acc": float(verdict.correct), "closed_exact": exact,
                "hedged": float(verdict.hedged)}  # fmt: skip
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

    def update(
        self, preds: list[str], truths: list[str], answer_types: list[str], questions: list[str] | None = None
    ) -> None:
        questions = questions if questions is not None else [""] * len(preds)
        for pred, truth, kind, question in zip(preds, truths, answer_types, questions, strict=True):
            for key, value in score_item(pred, truth, kind, question).items():
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
