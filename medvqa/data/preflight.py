"""Pre-flight token budget: every training sample's exact sequence length, before the first step.

A sample's length is what the collator (medvqa/data/collate.py) will build for it: the prompt through the
model's own chat template, its image placeholder expanded to the image's tokens, the answer and the end
token. Image tokens follow from the image's size alone: the header is read (PIL opens lazily; nothing is
decoded), shrunk as the dataset shrinks it (`data.max_image_side`, JPEG draft), and the processor's own
arithmetic gives the tokens (Qwen-VL: its image processor's `get_number_of_image_patches` under
data.min_pixels / data.max_pixels, i.e. smart_resize; PaliGemma: its fixed `image_seq_length`). Text is
tokenized once per distinct prompt and answer, image tokens once per distinct size, so a 50k-row release
costs one header read per image file plus a few batched tokenizer calls.

What the processor adds around the pieces (Qwen's placeholder counted once in the text, PaliGemma's BOS
and closing newline) is measured once, by collating one real sample (`calibrate`), and added to all.

The collator never truncates a prompt (only an answer, past data.max_answer_tokens), so a sequence is
never cut inside an image span: a sample too long for `data.max_length` is refused here instead, naming
it, or with data.on_bad_sample=skip left out and counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from medvqa.data.collate import VQACollator
from medvqa.data.errors import BadSamples
from medvqa.data.images import _open, open_image
from medvqa.data.pixels import HIGH_BIT_MODES
from medvqa.data.sample import VQASample

TOO_LONG = "longer than data.max_length"


@dataclass
class Budget:
    """Per-sample lengths of one split (None where the image could not be read: the loader reports it)."""

    lengths: list[int | None]
    image_tokens: list[int | None]
    seconds: float = 0.0

    @property
    def longest(self) -> int:
        return max((n for n in self.lengths if n is not None), default=0)

    @property
    def most_image_tokens(self) -> int:
        return max((n for n in self.image_tokens if n is not None), default=0)

    def within(self, max_length: int) -> Budget:
        """The samples `enforce` keeps (at most `max_length` tokens, or unmeasured)."""
        keep = [n is None or n <= max_length for n in self.lengths]
        return Budget([n for n, k in zip(self.lengths, keep, strict=True) if k],
                      [n for n, k in zip(self.image_tokens, keep, strict=True) if k], self.seconds)  # fmt: skip


def shrunk_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size PIL's `thumbnail((max_side, max_side))` gives (its own rounding), as VQADataset shrinks."""
    if width <= max_side and height <= max_side:
        return width, height
    aspect = width / height

    def round_aspect(number: float, key) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    x = y = max_side
    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return x, y


def image_size(sample: VQASample, max_side: int = 1024, window=None) -> tuple[int, int]:
    """(width, height) of the image the processor will get for `sample`, from the file's header."""
    img = _open(sample, window)
    if img.mode not in HIGH_BIT_MODES:
        img.draft("RGB", (max_side, max_side))  # as open_image: JPEGs decode at reduced scale
    return shrunk_size(*img.size, max_side)


class TokenCounter:
    """Sequence lengths as `collator` builds them. `completion_tokens` replaces each answer's length (GRPO
    trains on sampled completions of up to stage.max_completion_length tokens, not on the answer)."""

    def __init__(self, collator: VQACollator, max_side: int = 1024, window=None,
                 completion_tokens: int | None = None):  # fmt: skip
        self.collator, self.max_side, self.window = collator, max_side, window
        self.completion_tokens = completion_tokens
        self.processor = collator.processor
        self._sizes: dict[tuple, tuple[int, int] | None] = {}
        self._image_tokens: dict[tuple[int, int], int] = {}
        self._text: dict[str, int] = {}
        self.offset: int | None = None

    def size(self, sample: VQASample) -> tuple[int, int] | None:
        key = (sample.image, sample.image_row, sample.image_member)
        if key not in self._sizes:
            try:
                self._sizes[key] = image_size(sample, self.max_side, self.window)
            except (OSError, SyntaxError, ValueError):  # unreadable (DataError too): the loader reports it
                self._sizes[key] = None
        return self._sizes[key]

    def image_tokens(self, size: tuple[int, int]) -> int:
        """Tokens the processor expands one image of `size` (width, height) into."""
        if size not in self._image_tokens:
            self._image_tokens[size] = image_token_count(self.processor, size, self.collator.images_kwargs)
        return self._image_tokens[size]

    def text_tokens(self, prompts: list[str]) -> list[int]:
        missing = sorted(set(prompts) - set(self._text))
        if missing:
            ids = self.collator.tokenizer(missing)["input_ids"]
            self._text |= {p: len(t) for p, t in zip(missing, ids, strict=True)}
        return [self._text[p] for p in prompts]

    def answer_tokens(self, answers: list[str]) -> list[int]:
        if self.completion_tokens is not None:
            return [self.completion_tokens] * len(answers)
        return [len(ids) for ids in self.collator.answer_ids(answers)]

    def calibrate(self, sample: VQASample) -> int:
        """What the processor adds beyond text + image + answer tokens, from collating `sample` for real."""
        image = open_image(sample, self.max_side, self.window)
        batch = self.collator([{"sample": sample, "image": image}])
        parts = (self.text_tokens([self.collator.prompt_text(sample)])[0] + self.image_tokens(image.size)
                 + len(self.collator.answer_ids([sample.answer])[0]))  # fmt: skip
        return int(batch["attention_mask"][0].sum()) - parts

    def measure(self, samples: list[VQASample]) -> Budget:
        started = time.perf_counter()
        sizes = [self.size(s) for s in samples]
        if self.offset is None:
            first = next((s for s, size in zip(samples, sizes, strict=True) if size is not None), None)
            self.offset = self.calibrate(first) if first is not None else 0
        text = self.text_tokens([self.collator.prompt_text(s) for s in samples])
        answers = self.answer_tokens([s.answer for s in samples])
        images = [None if size is None else self.image_tokens(size) for size in sizes]
        lengths = [None if i is None else t + i + a + self.offset
                   for t, i, a in zip(text, images, answers, strict=True)]  # fmt: skip
        return Budget(lengths, images, time.perf_counter() - started)


def image_token_count(processor, size: tuple[int, int], images_kwargs: dict | None = None) -> int:
    """Image tokens for an image of `size` (width, height) under the collator's size kwargs
    (`{"size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}}` for Qwen-VL)."""
    width, height = size
    image_processor = getattr(processor, "image_processor", None)
    if hasattr(image_processor, "get_number_of_image_patches"):  # Qwen-VL: smart_resize under min/max pixels
        bounds = (images_kwargs or {}).get("size") or {}
        kwargs = {k: bounds[edge] for k, edge in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge"))
                  if edge in bounds}  # fmt: skip
        patches = image_processor.get_number_of_image_patches(height, width, kwargs)
        return patches // image_processor.merge_size**2
    if hasattr(processor, "_get_num_multimodal_tokens"):
        return int(processor._get_num_multimodal_tokens(image_sizes=[(height, width)]).num_image_tokens[0])
    return int(getattr(processor, "image_seq_length", 0) or getattr(image_processor, "image_seq_length", 0))


def enforce(samples: list[VQASample], budget: Budget, max_length: int, bad: BadSamples) -> list[VQASample]:
    """`samples` without those over `max_length` tokens: the first one raises a DataError naming it
    (data.on_bad_sample=error), or each is left out and counted under TOO_LONG (skip)."""
    kept = []
    for sample, n, img in zip(samples, budget.lengths, budget.image_tokens, strict=True):
        if n is not None and n > max_length:
            where = f"{sample.origin or sample.image} (sample {sample.id})"
            bad.report(where, TOO_LONG, f"It is {n} tokens ({img} of them image tokens) over "
                       f"data.max_length={max_length}: raise data.max_length, lower data.max_pixels (image "
                       "tokens) or shorten the question")  # fmt: skip
            continue
        kept.append(sample)
    return kept


def model_max_length(model) -> int | None:
    """The language model's position limit (text_config.max_position_embeddings), when its config has one."""
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", None) or config
    return getattr(text, "max_position_embeddings", None)
