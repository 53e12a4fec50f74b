"""The Guard: sits between a question, the model and the person asking.

    guard = Guard.for_run(run_dir, predictor, mode="patient")   # scope from the run's training questions,
                                                                # thresholds calibrated on its val split
    decision = guard.decide("Is there a lesion?", lambda q: predictor.answer(image, q))
    decision.guard       # "answered" | "referred" | "abstained"
    decision.shown_text  # what the patient reads

Modes (config group `guard/`): `patient` shows only `shown_text`: referrals, "not sure" and answers with the
disclaimer; `research` runs the same checks but still asks the model every question and shows its raw
answer next to the decision patient mode would take; `off` asks the model and shows its answer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from medvqa.guard.abstain import score_of
from medvqa.guard.novelty import NOVEL_IMAGE, NOVEL_TEXT, NoveltyGuard, NoveltyVerdict
from medvqa.guard.output import ALARMING_REFERRAL, DISCLAIMER, alarming, with_disclaimer
from medvqa.guard.scope import ScopeGuard

log = logging.getLogger(__name__)
Mode = Literal["off", "patient", "research"]
MODES = ("off", "patient", "research")
NOT_SURE = (
    "I am not sure about this one, so I would rather not guess. Please ask your doctor; they can look at the "
    "whole scan with you."
)


@dataclass(frozen=True)
class Decision:
    """What the guard decided for one question. `answer` is the model's raw Answer (None when the question
    never reached the model); `confidence` the score the threshold was applied to (closed: probability,
    open: mean token log-probability); `rule` names the check that decided (a scope kind such as `cancer`
    or `unlike_training`, `novel_image`, `low_confidence`, `alarming`, `in_scope`, `off`); `reason` says it in a sentence."""

    guard: Literal["answered", "referred", "abstained"]
    shown_text: str
    answer: Any = None
    confidence: float | None = None
    rule: str = ""
    reason: str = ""

    def fields(self) -> dict[str, Any]:
        """The decision as flat JSON fields (a prediction line's `guard`, `shown_text`, ...)."""
        return {"guard": self.guard, "shown_text": self.shown_text, "guard_rule": self.rule,
                "guard_reason": self.reason, "guard_confidence": self.confidence}  # fmt: skip


@dataclass
class Guard:
    """The three checks with their settings; `thresholds` maps an answer kind (closed / open) to the lowest
    score answered (math.inf: never). `scope=None` (mode off) skips the scope test."""

    mode: Mode = "patient"
    scope: ScopeGuard | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    target_precision: float = 0.95
    disclaimer: str = DISCLAIMER
    calibration: dict[str, Any] = field(default_factory=dict)  # how the thresholds were found
    novelty: NoveltyGuard | None = None  # images unlike the training images are not answered (None: no check)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(
                f"guard.mode={self.mode!r}; use one of {', '.join(MODES)} (guard=patient|research|off)"
            )
        if self.mode != "off" and self.scope is None:
            raise ValueError(f"guard.mode={self.mode} needs a scope guard (the run's training questions)")

    def decide(self, question: str, answer_fn: Callable[[str], Any], image: NoveltyVerdict | None = None
               ) -> Decision:  # fmt: skip
        """Scope -> image novelty (`image`: `self.image_verdict` of the question's image, None: not checked)
        -> model (`answer_fn(question)` -> Answer) -> output check -> abstention. In patient mode an
        out-of-scope question, or any question about a novel image, never reaches `answer_fn`. The scope
        comes first, so a question in crisis gets the crisis text whatever the image."""
        if self.mode == "off":
            answer = answer_fn(question)
            return Decision("answered", answer.answer, answer, score_of(answer), "off", "guard off")
        verdict = self.scope.check(question)
        if not verdict.in_scope:
            answer = answer_fn(question) if self.mode == "research" else None
            return self._shown(Decision("referred", verdict.referral, answer, _score(answer), verdict.kind,
                                        f"out of scope: {verdict.detail}"))  # fmt: skip
        if image is not None and image.novel:
            answer = answer_fn(question) if self.mode == "research" else None
            return self._shown(Decision("referred", NOVEL_TEXT, answer, _score(answer), NOVEL_IMAGE,
                                        f"unlike the training images: {image.reason}"))  # fmt: skip
        answer = answer_fn(question)
        return self._shown(self.judge(question, answer, verdict.detail))

    def image_verdict(self, image, row: int | None = None, member: str = "") -> NoveltyVerdict | None:
        """The novelty check of an image (PIL as decoded, or bytes / a path, with `row` / `member` for a
        parquet row or zip member, decoded as the run decodes them); None with no check (guard=off,
        guard.novelty_quantile=null) or an image that cannot be decoded."""
        if self.mode == "off" or self.novelty is None:
            return None
        if isinstance(image, Image.Image):
            return self.novelty.check(image)
        return self.novelty.check_source(image, row, member)

    def judge(self, question: str, answer, scope_detail: str = "") -> Decision:
        """The output check and the abstention threshold on an in-scope question's answer."""
        score = score_of(answer)
        term = alarming(answer.answer, question)
        if term:
            return Decision("referred", ALARMING_REFERRAL, answer, score, "alarming",
                            f"the answer names an alarming finding ({term!r})")  # fmt: skip
        threshold = self.thresholds.get(answer.kind, math.inf)
        if score is None or score < threshold:
            shown = "none" if score is None else f"{score:.3f}"
            return Decision("abstained", NOT_SURE, answer, score, "low_confidence",
                            f"{answer.kind} confidence {shown} below the threshold {threshold:.3f}")  # fmt: skip
        return Decision("answered", with_disclaimer(f"Answer: {answer.answer}", self.disclaimer), answer, score,
                        "in_scope", f"{scope_detail}; {answer.kind} confidence {score:.3f} >= {threshold:.3f}")  # fmt: skip

    def _shown(self, decision: Decision) -> Decision:
        """Research mode shows the model's raw answer (when it has one) in place of the patient text."""
        if self.mode == "research" and decision.answer is not None:
            return Decision(decision.guard, decision.answer.answer, decision.answer, decision.confidence,
                            decision.rule, decision.reason)  # fmt: skip
        return decision

    @classmethod
    def for_run(cls, run_dir, predictor, mode: Mode = "patient", target_precision: float = 0.95,
                min_similarity: float = 0.5, encoder: str | None = None, calibration_items: int | None = 512,
                batch_size: int = 16, thresholds: dict[str, float] | None = None,
                novelty_quantile: float | None = 0.99, novelty_images: int | None = 2000) -> Guard:  # fmt: skip
        """The guard of one run: scope from its training questions, thresholds calibrated on (the first
        `calibration_items` of) its validation split by `predictor` (medvqa.inference.Predictor), unless
        `thresholds` fixes them ({closed: probability, open: mean log-probability}); the image novelty
        check fitted on (`novelty_images` of) its training images, thresholded at `novelty_quantile` of its
        validation images' distances (None: no image check)."""
        from medvqa.guard.calibration import calibrate_run, run_novelty, run_questions

        if mode == "off":
            return cls(mode="off", target_precision=target_precision)
        if mode not in MODES:
            raise ValueError(
                f"guard.mode={mode!r}; use one of {', '.join(MODES)} (guard=patient|research|off)"
            )
        from medvqa.guard.scope import load_encoder

        started = time.time()
        datamodule, train_questions = run_questions(run_dir)
        scope = ScopeGuard(train_questions, min_similarity, load_encoder(encoder))
        if thresholds is None:
            thresholds, info = calibrate_run(
                datamodule, predictor, target_precision, calibration_items, batch_size, run_dir=run_dir
            )
        else:
            thresholds, info = fixed_thresholds(thresholds), {"items": 0, "fixed": True}
        novelty = run_novelty(datamodule, novelty_quantile, novelty_images)
        if novelty is not None:
            finite = math.isfinite(novelty.threshold)  # inf: no distances to set it by (JSON has no inf)
            info["novelty"] = {"quantile": novelty_quantile, "threshold": novelty.threshold if finite else None,
                               "train_images": len(novelty.train)}  # fmt: skip
        info["seconds"] = round(time.time() - started, 1)
        log.info("guard %s: thresholds %s from %d val answers in %.1f s", mode, thresholds, info["items"],
                 info["seconds"])  # fmt: skip
        return cls(mode, scope, thresholds, target_precision, calibration=info, novelty=novelty)


def fixed_thresholds(thresholds) -> dict[str, float]:
    """`guard.thresholds` as given, checked: both kinds, numbers (a kind left out is never answered)."""
    given = dict(thresholds)
    unknown = set(given) - {"closed", "open"}
    if unknown:
        raise ValueError(
            f"guard.thresholds={given}: only 'closed' and 'open' thresholds exist, not {sorted(unknown)}"
        )
    return {kind: float(given.get(kind, math.inf)) for kind in ("closed", "open")}


def _score(answer) -> float | None:
    return None if answer is None else score_of(answer)
