"""Real-shaped vision-language models built offline: the published architecture with random weights.

`model=qwen2_vl_2b_shape` (and `qwen2_vl_7b_shape`, `qwen2_5_vl_3b_shape`, `paligemma_3b_shape`) builds the
transformers class of the hub checkpoint from the values of its published config.json (written, with their
source, in conf/model/<name>.yaml): every width, head count, vocabulary row and rope setting, so memory and
speed are those of the real model, with no download. Weights are random (seeded). The tokenizer is made
here: a byte-level BPE trained on tiny.CORPUS, padded with unreachable filler entries to the real
tokenizer's length, with the family's special tokens at their real ids and the family's real chat template,
so the real processor and chat-template path runs.

`num_layers` / `vision_depth` shrink the decoder and the vision tower (CPU tests: `model.num_layers=2`);
widths and the vocabulary never shrink. `device=meta` builds at full depth without allocating anything
(`meta_parameter_count`); `device=cuda` draws the random weights on the GPU (seconds, where initialising a
2B model on the CPU takes a minute).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
    SiglipImageProcessor,
)

from medvqa.models.builders import VLM, _dtype, with_vision_sharing
from medvqa.models.tiny import corpus_bpe

# Qwen2-VL's added tokens in id order from 151643 (its tokenizer.json); Qwen2.5-VL adds the tool / FIM ones.
QWEN_FIRST_SPECIAL = 151643
QWEN2_VL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                     "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                     "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
QWEN2_5_VL_SPECIALS = QWEN2_VL_SPECIALS + ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
                                           "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]  # fmt: skip
# Gemma: <pad> <eos> <bos> <unk> are ids 0-3; PaliGemma's <loc0000>.. <seg127> fill 256000-257151 and <image>
# is 257152 (config.json image_token_index).
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
GEMMA_LOC_SEG = [f"<loc{i:0>4}>" for i in range(1024)] + [f"<seg{i:0>3}>" for i in range(128)]
GEMMA_TEXT_VOCAB = 256000
# The chat template of Qwen/Qwen2-VL-2B-Instruct's tokenizer_config.json (Qwen2.5-VL ships the same).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CLASSES = {
    "qwen2_vl": (Qwen2VLConfig, Qwen2VLForConditionalGeneration),
    "qwen2_5_vl": (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration),
    "paligemma": (PaliGemmaConfig, PaliGemmaForConditionalGeneration),
}


@lru_cache(maxsize=4)
def _tokenizer_json(family: str) -> str:
    """The family's tokenizer (module docstring) as JSON: deterministic, built once per process."""
    leading = GEMMA_SPECIALS if family == "paligemma" else []
    tok = corpus_bpe(leading, 600)
    vocab = dict(tok.get_vocab())
    merges = [tuple(m) for m in _merges(tok)]
    if family == "paligemma":
        tail, first_added = GEMMA_LOC_SEG, GEMMA_TEXT_VOCAB + len(GEMMA_LOC_SEG)
        fill_to, added = GEMMA_TEXT_VOCAB, ["<image>"]
    else:
        tail, first_added = [], QWEN_FIRST_SPECIAL
        fill_to = QWEN_FIRST_SPECIAL
        added = QWEN2_5_VL_SPECIALS if family == "qwen2_5_vl" else QWEN2_VL_SPECIALS
    # filler entries no merge can produce: the embedding rows a real vocabulary has, never emitted
    vocab |= {f"<|filler_{i}|>": i for i in range(len(vocab), fill_to)}
    vocab |= {t: fill_to + i for i, t in enumerate(tail)}
    assert len(vocab) == first_added, (len(vocab), first_added)
    full = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    full.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    full.decoder = decoders.ByteLevel()
    full.add_special_tokens(leading + added)
    return full.to_str()


def _merges(tok: Tokenizer) -> list[list[str]]:
    import json

    merges = json.loads(tok.to_str())["model"]["merges"]
    return [m.split(" ") if isinstance(m, str) else m for m in merges]


def make_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """A fresh tokenizer of the real length for `family` (module docstring)."""
    tok = Tokenizer.from_str(_tokenizer_json(family))
    if family == "paligemma":
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                       unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=QWEN_CHAT_TEMPLATE)  # fmt: skip


def shaped_config(family: str, text: dict[str, Any], vision: dict[str, Any], num_layers: int | None = None,
                  vision_depth: int | None = None, tok=None):  # fmt: skip
    """The transformers config of `family` from the published `text` / `vision` values, with the decoder cut to
    `num_layers` and the vision tower to `vision_depth` when given (None: the published depth)."""
    text, vision = dict(text), dict(vision)
    if num_layers is not None:
        text["num_hidden_layers"] = int(num_layers)
    depth_key = "num_hidden_layers" if family == "paligemma" else "depth"
    if vision_depth is not None:
        vision[depth_key] = int(vision_depth)
    if "fullatt_block_indexes" in vision:  # Qwen2.5-VL: full-attention blocks that still exist, else the last
        kept = [i for i in vision["fullatt_block_indexes"] if i < vision[depth_key]]
        vision["fullatt_block_indexes"] = kept or [vision[depth_key] - 1]
    tied = bool(text.get("tie_word_embeddings", False))
    config_cls = CLASSES[family][0]
    if family == "paligemma":
        ids = {"image_token_index": tok.convert_tokens_to_ids("<image>")}
        text |= {
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "bos_token_id": tok.bos_token_id,
        }
        return config_cls(text_config=text, vision_config=vision, projection_dim=vision["projection_dim"],
                          hidden_size=text["hidden_size"], tie_word_embeddings=tied, **ids)  # fmt: skip
    ids = {f"{name}_id": tok.convert_tokens_to_ids(f"<|{token}|>") for name, token in
           [("image_token", "image_pad"), ("video_token", "video_pad"), ("vision_start_token", "vision_start"),
            ("vision_end_token", "vision_end")]}  # fmt: skip
    text |= {
        "bos_token_id": QWEN_FIRST_SPECIAL,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    return config_cls(text_config=text, vision_config=vision, tie_word_embeddings=tied, **ids)


def build_shape(
    family: str,
    text: dict[str, Any],
    vision: dict[str, Any],
    num_layers: int | None = None,
    vision_depth: int | None = None,
    dtype: str = "bf16",
    device: str | None = None,
    seed: int = 0,
    attn_implementation: str | None = None,
    quantization: str | None = None,
    freeze: list[str] | None = None,
    name: str = "",
    share_vision: bool = True,
    vision_cache_mb: float = 1024,
) -> VLM:
    """The real-shaped model of `family` (qwen2_vl, qwen2_5_vl, paligemma) from its published config values,
    random weights drawn from `seed`, in `dtype` (bf16: what `dtype=auto` loads from the hub checkpoints),
    built on `device` (None: CPU; `meta`: shapes only; `cuda`: initialised on the GPU). `quantization=nf4`
    and `freeze`, `share_vision`, `vision_cache_mb` as for the tiny models (medvqa/models/tiny.py build_tiny)."""
    from medvqa.models.freeze import check_parts
    from medvqa.models.qlora import check_quantization, quantize_built

    if family not in CLASSES:
        raise ValueError(f"model.family={family!r} has no shaped build; choose one of {sorted(CLASSES)}")
    check_quantization(quantization)
    parts = check_parts(freeze)
    processor = make_processor(family, vision)
    config = shaped_config(family, text, vision, num_layers, vision_depth, processor.tokenizer)
    if attn_implementation:
        config._attn_implementation = attn_implementation
    config._name_or_path = name or f"{family}-shape"
    with torch.random.fork_rng(devices=[]), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        model = CLASSES[family][1]._from_config(config, dtype=_torch_dtype(dtype))
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    if device != "meta":
        model = quantize_built(model, quantization)
    with_vision_sharing(model, family, share_vision, vision_cache_mb)
    return VLM(model=model.eval(), processor=processor, family=family, freeze=parts)


def _torch_dtype(name: str) -> torch.dtype:
    dtype = _dtype(name)
    return torch.bfloat16 if dtype == "auto" else dtype  # the checkpoints' torch_dtype is bfloat16


def make_processor(family: str, vision: dict[str, Any]):
    """The family's processor with the published preprocessing (Qwen: 14-pixel patches, 2x2 merge, 56x56 to
    28x28x1280 pixels; PaliGemma: 224x224, 256 image tokens) around a fresh tokenizer."""
    tok = make_tokenizer(family)
    if family == "paligemma":
        size = int(vision.get("image_size", 224))
        image_processor = SiglipImageProcessor(size={"height": size, "width": size})
        image_processor.image_seq_length = (size // int(vision["patch_size"])) ** 2
        return PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
    cls = Qwen2_5_VLProcessor if family == "qwen2_5_vl" else Qwen2VLProcessor
    return cls(image_processor=Qwen2VLImageProcessor(), tokenizer=tok, video_processor=Qwen2VLVideoProcessor(),
               chat_template=QWEN_CHAT_TEMPLATE)  # fmt: skip


def meta_parameter_count(model_cfg: Any) -> int:
    """Parameters of a shape config (conf/model/*_shape.yaml's `model:` node) built at full depth on the meta
    device: no memory, tied embeddings counted once (as a checkpoint's tensors are)."""
    from hydra.utils import instantiate

    vlm = instantiate(model_cfg, num_layers=None, vision_depth=None, device="meta")
    return sum(p.numel() for p in vlm.model.parameters())
