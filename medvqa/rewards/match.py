"""Rewards that compare a completion with the sample's labels: format, answer, plane, modality.

Every reward has the signature `fn(completions: list[str], **fields) -> list[float]`, where `fields` are
the sample fields (answer, answer_type, plane, modality, caption, ...) as lists aligned with the
completions. NaN means "does not apply to this sample" (e.g. no plane label): it is left out of the
weighted total and of the logged mean.
"""

from __future__ import annotations

import math

from medvqa.answers import closed_verdict, exact_match, normalize, open_recall, parsed_answer, token_f1
from medvqa.rewards.tags import answer_text, tag, well_formed

NAN = math.nan
# spellings that name the same modality; compared after medvqa.answers.normalize
MODALITY_SYNONYMS = {"mr": "mri", "magnetic resonance": "mri", "magnetic resonance imaging": "mri",
                     "computed tomography": "ct", "xray": "x ray", "radiograph": "x ray",
                     "plain film": "x ray", "us": "ultrasound"}  # fmt: skip


def format_reward(completions: list[str], **_) -> list[float]:
    """1 for `<think>..</think>[<plane>..</plane>][<modality>..</modality>]<answer>..</answer>`, else 0."""
    return [float(well_formed(c)) for c in completions]


def answer_match(
    completions: list[str],
    answer: list[str],
    answer_type: list[str],
    open_score: str = "f1",
    question: list[str] | None = None,
    **_,
) -> list[float]:
    """Closed questions: the evaluation's closed_exact (medvqa/eval/metrics.py score_item), read by
    medvqa/answers.py as the metrics read it: the parsed answer (the answer tag, else the first sentence)
    must equal the truth once normalised and name no second option, so "no" inside "normal" earns nothing
    and a hedge ("yes, no") earns nothing. Open questions: token F1 (`open_score: f1`) or the protocol's
    recall (`open_score: recall`; rewards listing every word), on the answer tag (else the whole completion)."""
    if open_score not in ("f1", "recall"):
        raise ValueError(f"stage.reward_options.answer_match.open_score={open_score!r}; use f1 or recall")
    score_open = token_f1 if open_score == "f1" else open_recall
    questions = question if question is not None else [""] * len(completions)
    return [
        _closed_exact(c, truth, q) if kind == "closed" else score_open(answer_text(c), truth)
        for c, truth, kind, q in zip(completions, answer, answer_type, questions, strict=True)
    ]


def _closed_exact(completion: str, truth: str, question: str) -> float:
    said = parsed_answer(completion)
    return 0.0 if closed_verdict(said, truth, question).hedged else exact_match(said, truth)


def _canon(text: str, synonyms: dict[str, str]) -> str:
    """Normalised text with a leading synonym replaced: "MR - T2 weighted" -> "mri t2 weighted"."""
    text = normalize(text)
    for key in sorted(synonyms, key=len, reverse=True):
        if text == key or text.startswith(key + " "):
            return synonyms[key] + text[len(key) :]
    return text


def _field_match(
    completions: list[str], truths: list[str], name: str, synonyms: dict[str, str]
) -> list[float]:
    """The tag equals the label, or names its leading words ("CT" for a "CT - noncontrast" label)."""
    out = []
    for c, truth in zip(completions, truths, strict=True):
        said = tag(c, name)
        if not truth:
            out.append(NAN)
            continue
        said, truth = _canon(said or "", synonyms), _canon(truth, synonyms)
        out.append(float(bool(said) and (said == truth or truth.startswith(said + " "))))
    return out


def plane_match(completions: list[str], plane: list[str], **_) -> list[float]:
    """1 when the `<plane>` tag names the sample's plane (axial / coronal / sagittal ...), 0 when it is
    wrong or missing, NaN when the sample has no plane label."""
    return _field_match(completions, plane, "plane", {"transverse": "axial"})


def modality_match(completions: list[str], modality: list[str], **_) -> list[float]:
    """1 when the `<modality>` tag names the sample's modality (synonyms such as MR / MRI count), 0 when
    wrong or missing, NaN when the sample has no modality label."""
    return _field_match(completions, modality, "modality", MODALITY_SYNONYMS)
