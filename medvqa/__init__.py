"""medvqa: Lightning + Hydra experiments for fine-tuning vision-language models on medical VQA."""

import logging

# torchao (a dependency, for quantize=) registers Enum pytree nodes the way torch 2.14 deprecates; peft and
# transformers import it at start-up, which put two such warnings at the top of every command's output
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

__version__ = "0.1.0"
