"""Inference on new images with a trained run (or a base model, zero-shot): `Predictor`, `Answer`, `Item`
(medvqa/inference/predictor.py); what `python -m medvqa.predict` and the app build on."""

from medvqa.inference.predictor import Answer, Item, Predictor

__all__ = ["Answer", "Item", "Predictor"]
