"""medvqa: Lightning + Hydra experiments for fine-tuning vision-language models on medical VQA."""

__version__ = "0.1.0"
