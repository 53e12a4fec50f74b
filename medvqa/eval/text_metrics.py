"""Text-generation metrics for open answers and captions, computed by the implementations papers compare against.

- BLEU-1..4, ROUGE-L, METEOR, CIDEr: pycocoevalcap (the COCO caption evaluation code that R2Gen and the
  report-generation papers use): both sides go through its PTBTokenizer (lower-cased, punctuation removed),
  then `Bleu(4)`, `Rouge()`, `Meteor()`, `Cider()` score the tokenised text.
- BERTScore P/R/F1: the `bert-score` package's encoding, matched per pair (medvqa/eval/bertscore.py).

Corpus values are the libraries' own: BLEU-n is the corpus BLEU (clipped n-gram counts pooled over all
items, one brevity penalty), METEOR the jar's aggregate over all items; ROUGE-L, CIDEr and BERTScore are
the mean of their per-item values. CIDEr's idf weights come from the references of the whole set, so a
per-item CIDEr only means something within the set it was computed on.

Inputs pycocoevalcap mishandles, and what happens to them here:
- Line breaks. PTBTokenizer reads one sentence per line (`-preserveLines`) and pycocoevalcap only turns
  "\\n" into a space, so "\\r", "\\v", "\\f", U+0085, U+2028/9 inside an answer shift every later answer onto
  the wrong item; METEOR's stdin protocol breaks the same way. Every run of whitespace becomes one space
  first (`clean`), which is what the tokenizer would do to it within a line anyway.
- "|||" (METEOR's field separator) needs nothing: PTBTokenizer splits it into "| | |" before METEOR sees it.
- Empty or punctuation-only text (empty after tokenising) is scored as the libraries score it: 0 for
  BLEU/METEOR/CIDEr against a non-empty reference; ROUGE-L gives 1.0 to an empty prediction of an
  empty reference.
- Both need `java`; without it `MetricUnavailableError` says how to install it, never a missing number.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from medvqa.eval.bertscore import KEYS as BERTSCORE_KEYS
from medvqa.eval.bertscore import BERTScore

COCO_METRICS = ("bleu", "rouge_l", "meteor", "cider")
METRICS = (*COCO_METRICS, "bertscore")
JAVA_FIX = "apt-get install -y default-jre-headless"

Reference = str | Sequence[str]


class MetricUnavailableError(RuntimeError):
    """A metric needs a system part that is missing; the message says how to install it."""


def clean(text: Any) -> str:
    """One line: every whitespace run (line breaks of any kind included) becomes one space."""
    return " ".join(str(text).split())


def require_java() -> None:
    if shutil.which("java") is None:
        raise MetricUnavailableError(
            "BLEU/ROUGE-L/METEOR/CIDEr run pycocoevalcap, whose PTB tokenizer and METEOR scorer are Java "
            f"programs, and `java` is not on PATH: install a Java runtime (`{JAVA_FIX}`; `make install` "
            "does it on Debian) or leave these metrics out (keep only bertscore)"
        )


def as_groups(references: Sequence[Reference], ids: Sequence[str]) -> list[list[str]]:
    groups = []
    for key, ref in zip(ids, references, strict=True):
        group = [ref] if isinstance(ref, str) else list(ref)
        if not group:
            raise ValueError(f"item {key!r} has no reference; give at least one (an empty string is allowed)")
        groups.append(group)
    return groups


def tokenize(groups: list[list[str]]) -> dict[int, list[str]]:
    """PTBTokenizer over cleaned text; checks that every item came back (its line alignment held)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    out = PTBTokenizer().tokenize({i: [{"caption": clean(t)} for t in g] for i, g in enumerate(groups)})
    if any(len(out.get(i, [])) != len(g) for i, g in enumerate(groups)):
        raise RuntimeError("pycocoevalcap's PTBTokenizer lost lines: its output no longer aligns with items")
    return out


def coco_scores(
    predictions: Sequence[str], groups: list[list[str]], metrics: Sequence[str] = COCO_METRICS
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(corpus values, per-item values) of the pycocoevalcap metrics named in `metrics`."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    require_java()
    both = tokenize([[p] for p in predictions] + groups)  # one Java start for both sides
    res = {i: both[i] for i in range(len(predictions))}
    gts = {i: both[len(predictions) + i] for i in range(len(groups))}
    corpus: dict[str, float] = {}
    items: dict[str, list[float]] = {}
    if "bleu" in metrics:
        with contextlib.redirect_stdout(io.StringIO()):  # BleuScorer prints its n-gram counts
            score, scores = Bleu(4).compute_score(gts, res)
        for n in range(4):
            corpus[f"bleu_{n + 1}"], items[f"bleu_{n + 1}"] = float(score[n]), [float(s) for s in scores[n]]
    for name, make in (("rouge_l", Rouge), ("cider", Cider), ("meteor", Meteor)):
        if name in metrics:
            score, scores = make().compute_score(gts, res)
            corpus[name], items[name] = float(score), [float(s) for s in scores]
    return corpus, items


def text_metrics(
    predictions: Sequence[str],
    references: Sequence[Reference],
    ids: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
    bertscore: BERTScore | None = None,
) -> dict[str, Any]:
    """Score N predictions against their references (a string, or a list of strings, per item).

    Returns {"corpus": {metric: value}, "per_item": [{"id": id, metric: value, ...}] * N (input order),
    "scorers": {library: version, "bertscore": {...}}}. Metric keys: bleu_1..bleu_4, rouge_l, meteor,
    cider, bertscore_p, bertscore_r, bertscore_f1 (those asked for in `metrics`). `bertscore` is a loaded
    scorer to reuse across calls (default: a new `BERTScore()` on the packaged MiniLM).
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown text metrics {sorted(unknown)}; choose from {list(METRICS)}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    ids = [str(i) for i in (ids if ids is not None else range(len(predictions)))]
    if len(set(ids)) != len(ids) or len(ids) != len(predictions):
        raise ValueError("ids must be unique, one per prediction")
    groups = as_groups(references, ids)
    corpus: dict[str, float] = {}
    items: dict[str, list[float]] = {}
    scorers: dict[str, Any] = {}
    if predictions and set(metrics) & set(COCO_METRICS):
        corpus, items = coco_scores([str(p) for p in predictions], groups, metrics)
        scorers["pycocoevalcap"] = version("pycocoevalcap")
    if predictions and "bertscore" in metrics:
        bertscore = bertscore or BERTScore()
        items |= bertscore.score(predictions, groups)
        corpus |= {k: sum(items[k]) / len(items[k]) for k in BERTSCORE_KEYS}
        scorers["bertscore"] = bertscore.describe()
    per_item = [{"id": key} | {m: v[i] for m, v in items.items()} for i, key in enumerate(ids)]
    return {"corpus": corpus, "per_item": per_item, "scorers": scorers}
