"""Tiny vision-language models built offline from the real `transformers` classes.

Same model classes, processors and chat templates as the hub checkpoints, with small configs, random
weights (seeded) and a byte-level BPE tokenizer trained here on a fixed corpus. They exercise every code
path that a real Qwen2-VL / Qwen2.5-VL / PaliGemma takes, on a CPU, with no network.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
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

from medvqa.models.builders import VLM, with_vision_sharing

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<image>"]
# Qwen-VL's chat layout: <|im_start|>role\n ... <|im_end|>\n, images as vision_start/image_pad/vision_end.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# The words a medical VQA model meets most; everything else falls back to bytes.
CORPUS = """
system user assistant You are a helpful medical assistant. Answer the question about the image.
Is there a lesion in this image? Is this a CT MRI X-Ray image? Is this an image in the axial coronal
sagittal plane? Does this image show the head chest abdomen? Is the lesion on the left right side?
What imaging modality was used? In which plane was this image taken? Which organ is shown? On which side
is the lesion? What is abnormal? Where is the mass? Describe the findings. How many? What color is it?
yes no ct mri x-ray axial coronal sagittal head chest abdomen left right lung liver kidney brain heart
normal abnormal mass nodule fracture effusion pneumothorax opacity enlarged contrast T1 T2 FLAIR
polyp ulcer instrument colonoscopy gastroscopy endoscopy pathology tissue cell
<think> </think> <answer> </answer> <plane> </plane> <modality> </modality>
0 1 2 3 4 5 6 7 8 9 10
"""


def corpus_bpe(specials: tuple[str, ...] | list[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE trained on CORPUS with `specials` first (deterministic): the tiny models' tokenizer,
    and the base that medvqa/models/shapes.py pads to a real vocabulary's length."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(specials), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tok.train_from_iterator([line for line in CORPUS.splitlines() if line] * 4, trainer)
    return tok


@lru_cache(maxsize=4)
def _tokenizer_json(specials: tuple[str, ...], vocab_size: int) -> str:
    """corpus_bpe cached as JSON, so every call gets a fresh copy."""
    return corpus_bpe(specials, vocab_size).to_str()


def make_tokenizer(family: str, vocab_size: int = 600) -> PreTrainedTokenizerFast:
    if family == "paligemma":
        tok = Tokenizer.from_str(_tokenizer_json(tuple(GEMMA_SPECIALS), vocab_size))
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
            extra_special_tokens={"image_token": "<image>"},
        )  # fmt: skip
    tok = Tokenizer.from_str(_tokenizer_json(tuple(QWEN_SPECIALS), vocab_size))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=QWEN_CHAT_TEMPLATE,
    )


def _qwen_text_config(tok, hidden_size: int, layers: int) -> dict:
    half = hidden_size // 4 // 2  # rotary frequencies per head, split over (time, height, width)
    section = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    return dict(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": section},
        bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        initializer_range=hidden_size**-0.5,
    )  # fmt: skip


def _qwen_ids(tok) -> dict:
    return {
        "image_token_id": tok.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tok.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tok.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tok.convert_tokens_to_ids("<|vision_end|>"),
    }


def build_tiny(
    family: str = "qwen2_vl",
    hidden_size: int = 96,
    num_layers: int = 3,
    vision_depth: int = 2,
    image_size: int = 56,
    seed: int = 0,
    quantization: str | None = None,
    freeze: list[str] | None = None,
    share_vision: bool = True,
    vision_cache_mb: float = 1024,
) -> VLM:
    """A tiny VLM of `family` (qwen2_vl, qwen2_5_vl, paligemma) with random weights drawn from `seed`.
    The defaults are conf/model/tiny_*.yaml's, so `build_tiny()` is the default run's base model (for
    any run, `medvqa.models.load_base(run_dir)` rebuilds the base from the run's config.yaml).
    `quantization=nf4` (peft=qlora, CUDA only) stores the built weights in 4-bit as a hub checkpoint would
    be (medvqa/models/qlora.py); `freeze` is carried on the VLM (builders.VLM.freeze); `share_vision`,
    `vision_cache_mb`: builders.with_vision_sharing."""
    from medvqa.models.freeze import check_parts
    from medvqa.models.qlora import check_quantization, quantize_built

    check_quantization(quantization)
    parts = check_parts(freeze)
    builders = {"qwen2_vl": _tiny_qwen2_vl, "qwen2_5_vl": _tiny_qwen2_5_vl, "paligemma": _tiny_paligemma}
    if family not in builders:
        raise ValueError(f"model.family={family!r} has no tiny build; choose one of {sorted(builders)}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, processor = builders[family](hidden_size, num_layers, vision_depth, image_size)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model = quantize_built(model, quantization)
    with_vision_sharing(model, family, share_vision, vision_cache_mb)
    return VLM(model=model.eval(), processor=processor, family=family, freeze=parts)


def _qwen_processor(cls, tok, image_size: int):
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels)
    return cls(image_processor=image_processor, tokenizer=tok, video_processor=Qwen2VLVideoProcessor(),
               chat_template=QWEN_CHAT_TEMPLATE)  # fmt: skip


def _tiny_qwen2_vl(hidden: int, layers: int, depth: int, image_size: int):
    tok = make_tokenizer("qwen2_vl")
    vision = dict(
        depth=depth,
        embed_dim=hidden,
        hidden_size=hidden,
        num_heads=4,
        mlp_ratio=2,
        initializer_range=hidden**-0.5,
    )
    config = Qwen2VLConfig(
        text_config=_qwen_text_config(tok, hidden, layers), vision_config=vision, **_qwen_ids(tok)
    )
    return Qwen2VLForConditionalGeneration(config), _qwen_processor(Qwen2VLProcessor, tok, image_size)


def _tiny_qwen2_5_vl(hidden: int, layers: int, depth: int, image_size: int):
    tok = make_tokenizer("qwen2_5_vl")
    vision = dict(depth=depth, hidden_size=hidden, intermediate_size=hidden * 2, num_heads=4, out_hidden_size=hidden,
                  window_size=56, fullatt_block_indexes=[depth - 1])  # fmt: skip
    config = Qwen2_5_VLConfig(
        text_config=_qwen_text_config(tok, hidden, layers), vision_config=vision, **_qwen_ids(tok)
    )
    return Qwen2_5_VLForConditionalGeneration(config), _qwen_processor(Qwen2_5_VLProcessor, tok, image_size)


def _tiny_paligemma(hidden: int, layers: int, depth: int, image_size: int):
    tok = make_tokenizer("paligemma")
    patch = 14
    vision = dict(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=depth, num_attention_heads=4,
                  image_size=image_size, patch_size=patch, projection_dim=hidden)  # fmt: skip
    text = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=1, head_dim=hidden // 4,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)  # fmt: skip
    config = PaliGemmaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                             projection_dim=hidden, hidden_size=hidden)  # fmt: skip
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    image_processor.image_seq_length = (image_size // patch) ** 2
    return PaliGemmaForConditionalGeneration(config), PaliGemmaProcessor(
        image_processor=image_processor, tokenizer=tok
    )
