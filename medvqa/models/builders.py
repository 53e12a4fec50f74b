"""Loading vision-language models: hub id or local path -> (model, processor), through transformers' Auto classes."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import torch

log = logging.getLogger(__name__)

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "paligemma")


@dataclass
class VLM:
    model: Any  # a transformers PreTrainedModel (later wrapped by peft)
    processor: Any  # its ProcessorMixin
    family: str = ""
    # parts whose weights do not train (`model.freeze`): medvqa.run's build freezes them once the adapter
    # is on (medvqa/models/freeze.py); the builders themselves return every weight trainable
    freeze: tuple[str, ...] = ()


class ModelUnavailableError(RuntimeError):
    """The checkpoint cannot be found offline or locally; the message says what to set."""


def from_pretrained(
    name_or_path: str,
    family: str = "",
    dtype: str = "auto",
    attn_implementation: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    quantization: str | None = None,
    freeze: list[str] | None = None,
    share_vision: bool = True,
    vision_cache_mb: float = 1024,
) -> VLM:
    """Load any image-text-to-text checkpoint (Qwen2-VL, Qwen2.5-VL, PaliGemma, ...) by hub id or local path.
    `quantization=nf4` (peft=qlora) loads the base in 4-bit (medvqa/models/qlora.py; CUDA only, checked
    before anything is downloaded); `freeze` is carried on the VLM (see VLM.freeze); `share_vision` /
    `vision_cache_mb`: the vision tower once per distinct image (see with_vision_sharing)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from medvqa.models.freeze import check_parts
    from medvqa.models.qlora import prepare, quantized_kwargs

    load = {"dtype": _dtype(dtype)} | quantized_kwargs(quantization)  # raises first on a machine without CUDA
    parts = check_parts(freeze)
    name_or_path, local_only = _source(name_or_path, revision)
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code, "local_files_only": local_only}
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
        model = AutoModelForImageTextToText.from_pretrained(
            name_or_path, attn_implementation=attn_implementation, **load, **kwargs
        )
    except OSError as e:
        if os.path.isdir(name_or_path):
            cause = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelUnavailableError(
                f"model.name_or_path={name_or_path} could not be loaded: {cause}. The folder must hold a "
                "transformers checkpoint (config.json, weights, processor and tokenizer files)"
            ) from None
        raise ModelUnavailableError(f"model.name_or_path={name_or_path} is not in the local Hugging Face "
                                    f"cache (no network?). {_DOWNLOAD.format(name=name_or_path)}") from None  # fmt: skip
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model = prepare(model, quantization)
    family = family or model.config.model_type
    with_vision_sharing(model, family, share_vision, vision_cache_mb)
    return VLM(model=model, processor=processor, family=family, freeze=parts)


def with_vision_sharing(model, family: str, share: bool = True, cache_mb: float = 1024) -> None:
    """`model.share_vision` / `model.vision_cache_mb`, for every builder: the model's image-feature step
    runs once per distinct image of a call and, while the tower is frozen, is kept across calls in an LRU
    of `cache_mb` MB (medvqa/models/vision_cache.py). `share=false` leaves the model as transformers built
    it (the unshared path, e.g. to compare)."""
    if share:
        from medvqa.models.vision_cache import share_image_features

        share_image_features(model, family, cache_mb)


_DOWNLOAD = ("Download it where there is network (`hf download {name} --local-dir DIR`) and set "
             "model.name_or_path=DIR, or fill the cache (`hf download {name}`) and set HF_HUB_OFFLINE=1")  # fmt: skip
HUB_TIMEOUT_S = 3.0


def looks_like_path(name: str) -> bool:
    """A value meant as a folder, not a hub id (`org/name`): absolute, ./ ../ ~, more than one slash, or
    a name whose parent folder exists here."""
    if os.path.isabs(name) or name.startswith(("./", "../", "~", ".\\", "..\\")) or name in (".", ".."):
        return True
    parent = os.path.dirname(name)
    return name.count("/") > 1 or bool(parent and os.path.isdir(parent))


def _source(name: str, revision: str | None) -> tuple[str, bool]:
    """(what to load, local files only). A folder loads as it is; a missing folder, or a hub id that is
    neither cached nor reachable, is a ModelUnavailableError at once, instead of minutes of retries.
    With the hub unreachable a cached id loads from the cache."""
    import huggingface_hub
    from huggingface_hub import constants

    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return path, False
    if looks_like_path(name):
        raise ModelUnavailableError(
            f"model.name_or_path={name}: the folder {os.path.abspath(path)} does not exist. Point it at a "
            "folder holding a transformers checkpoint, or give a hub id such as Qwen/Qwen2-VL-2B-Instruct"
        )
    if constants.HF_HUB_OFFLINE:
        return name, True
    cached = isinstance(huggingface_hub.try_to_load_from_cache(name, "config.json", revision=revision), str)
    if hub_reachable():
        return name, False
    host = urlparse(constants.ENDPOINT).hostname
    if cached:
        log.warning("the hub (%s) is unreachable: loading %s from the local cache", host, name)
        return name, True
    raise ModelUnavailableError(
        f"model.name_or_path={name} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
        f"the hub ({host}) cannot be reached. {_DOWNLOAD.format(name=name)}"
    )


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (HF_ENDPOINT), or to the HTTPS proxy when one is set, opens
    within `timeout` seconds. Name lookup runs in a daemon thread, so a hanging DNS cannot stall it."""
    from huggingface_hub import constants

    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(k)), None)  # fmt: skip
    url = urlparse(proxy or constants.ENDPOINT)
    address = (url.hostname, url.port or (443 if url.scheme == "https" else 80))
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _dtype(name: str):
    if name in ("auto", None):
        return "auto"
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}  # fmt: skip
    if name not in table:
        raise ValueError(f"model.dtype={name!r}; use one of auto, {', '.join(table)}")
    return table[name]
