"""Answering new (image, question) pairs exactly as a run's evaluation answers its test questions.

    from medvqa.inference import Predictor

    predictor = Predictor.from_run("outputs/<run>")             # base + the run's adapter, its decoding
    a = predictor.answer("scan.png", "Is there a fracture?")    # Answer(answer="no", kind="closed", ...)
    answers = predictor.answer_many([{"image": "a.png", "question": "Which organ is shown?"}], batch_size=16)

Same collator (chat template, system prompt, prompt template, the stage's instruction, min/max pixels),
same image decoding (medvqa/data/images.py, `data.max_image_side`, `data.window`), same greedy decoding
(`stage.max_new_tokens`, `stage.eval_generation`) and the same answer parsing (GRPO's `<answer>` tag) as the
run's test step. On top of the answer: `mean_logprob` (every answer) and, for closed questions,
`option_logprobs`, `options` and `confidence` from the log-probability of each option as a neutral answer
(medvqa/inference/scoring.py; docs/predict.md), scaled by the temperature of the run's calibration.json
when it has one (`calibrated`: True; medvqa/eval/calibration.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.utils import get_class, instantiate
from lightning.fabric.utilities.apply_func import move_data_to_device
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm.auto import tqdm

from medvqa.data.collate import VQACollator
from medvqa.data.errors import DataError
from medvqa.data.images import load_image, open_image
from medvqa.data.pixels import check_frame
from medvqa.data.sample import VQASample
from medvqa.inference import scoring
from medvqa.inference.export import eval_stage
from medvqa.stages.base import VLMStage

log = logging.getLogger(__name__)
DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class Answer:
    """One answered question. `confidence` (closed only): the probability of the model's answer among the
    question's polar options, `options` each option's (under the run's fitted temperature when
    `calibrated`, else T = 1), `option_logprobs` each option's log-probability before any temperature;
    `mean_logprob`: the mean log-probability of the generated tokens (end token included); `completion`:
    the raw generation `answer` was parsed from."""

    id: str
    image: str
    question: str
    answer: str
    kind: str  # "closed" | "open"
    confidence: float | None
    options: dict[str, float] | None
    mean_logprob: float
    completion: str
    option_logprobs: dict[str, float] | None = None
    calibrated: bool = False

    def to_row(self) -> dict[str, Any]:
        """The predictions.jsonl line: confidence and options only for closed questions, the completion
        only when parsing changed it."""
        row = asdict(self)
        if self.kind != "closed":
            del row["confidence"], row["options"], row["option_logprobs"], row["calibrated"]
        if self.completion == self.answer:
            del row["completion"]
        return row


@dataclass(frozen=True)
class Item:
    """One question to answer. `image`: a path (with `image_row` / `image_member` for a parquet row or a
    zip member, as in VQASample), a PIL image or encoded bytes. `where` names it in error messages."""

    image: Any
    question: str
    id: str = ""
    image_row: int | None = None
    image_member: str = ""
    where: str = ""


class Predictor:
    """A model with its processor and the evaluation contract of one run (or of a zero-shot config)."""

    def __init__(self, stage: VLMStage, collator: VQACollator, max_side: int = 1024, window=None,
                 batch_size: int = DEFAULT_BATCH_SIZE, parse=VLMStage.parse_answer, dicom_frame="middle",
                 temperature: float | None = None):  # fmt: skip
        """`stage` holds the model and generates as evaluation does; `parse` turns a completion into the
        answer (the run's stage class's `parse_answer`); `batch_size`: answer_many's default;
        `dicom_frame`: the frame of a multi-frame DICOM decoded (data.dicom_frame); `temperature`: a fitted
        calibration temperature (None: uncalibrated, T = 1)."""
        self.stage, self.collator, self.parse = stage, collator, parse
        self.temperature = temperature
        self.max_side, self.window, self.batch_size = max_side, window, batch_size
        self.dicom_frame = check_frame(dicom_frame)
        self.device = next(stage.model.parameters()).device

    # -- building ------------------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", quantize: str | None = None) -> Predictor:
        """The run's base model with its adapter, its prompt, preprocessing and evaluation decoding;
        `quantize` (int8 | int4, medvqa/models/quantize.py) merges the adapter and quantizes."""
        from medvqa.models.runs import load_run, run_config

        cfg = run_config(run_dir, adapter=True)
        if cfg.data.get("blank_images"):
            log.warning("run=%s was trained and evaluated on blank images (data.blank_images=true); predict "
                        "answers from the real images", run_dir)  # fmt: skip
        vlm = load_run(run_dir)
        predictor = cls.build(vlm.model, vlm.processor, cfg.data, cfg.stage, device, quantize)
        predictor.temperature = run_temperature(run_dir)
        return predictor

    @classmethod
    def from_config(cls, cfg: DictConfig | Mapping) -> Predictor:
        """Any `model:` config (conf/model/), with `adapter:` (a peft folder) or none (zero-shot); `data:`
        and `stage:` give the prompt, preprocessing and decoding keys (conf/predict.yaml), `device`,
        `quantize`."""
        cfg = OmegaConf.create(cfg) if not isinstance(cfg, DictConfig) else cfg
        if not cfg.get("model"):
            raise ValueError(
                "model= is missing: give run=<run folder>, or model=<name> (conf/model/) for zero-shot"
            )
        vlm = instantiate(cfg.model)
        model = vlm.model
        if cfg.get("adapter"):
            from peft import PeftModel

            if not (Path(cfg.adapter) / "adapter_config.json").is_file():
                raise FileNotFoundError(f"adapter={cfg.adapter} has no adapter_config.json: point it at a "
                                        "peft adapter folder (a run's adapter/)")  # fmt: skip
            model = PeftModel.from_pretrained(model, str(cfg.adapter))
        return cls.build(model, vlm.processor, cfg.get("data") or {}, cfg.get("stage") or {},
                         cfg.get("device") or "cpu", cfg.get("quantize"))  # fmt: skip

    @classmethod
    def build(cls, model, processor, data: Mapping, stage: Mapping, device: str = "cpu",
              quantize: str | None = None) -> Predictor:  # fmt: skip
        """The predictor of `model` under a `data:` and a `stage:` config (a run's, or predict.yaml's)."""
        from medvqa.models.quantize import check_form, quantize_model

        model = model.eval()
        model = quantize_model(model, check_form(quantize), device) if quantize else model.to(device)
        stage_class = get_class(stage["_target_"]) if stage.get("_target_") else VLMStage
        generator = eval_stage(OmegaConf.create({"stage": _plain(stage)}), model, processor)
        collator = VQACollator.from_config(processor, data, stage_class.prompt_instruction(stage))
        return cls(generator, collator, int(data.get("max_image_side") or 1024), _plain(data.get("window")),
                   int(data.get("eval_batch_size") or DEFAULT_BATCH_SIZE), stage_class.parse_answer,
                   data.get("dicom_frame") or "middle")  # fmt: skip

    # -- answering -----------------------------------------------------------------------------------
    def answer(self, image: Image.Image | bytes | str | Path, question: str, id: str = "") -> Answer:
        """One answer; a bad image or an empty question raises DataError (its message says what is wrong)."""
        return self.answer_many([Item(image, question, id)], batch_size=1, progress=False)[0]

    def answer_many(self, items: Iterable[Item | Mapping | Sequence], batch_size: int | None = None,
                    progress: bool = True, skipped: list[dict] | None = None) -> list[Answer]:  # fmt: skip
        """Answers in the order of `items` (Item, {"image", "question", "id"?} or (image, question)), in
        batches of `batch_size` (default: the run's data.eval_batch_size) with a tqdm bar. A bad item (image
        missing or undecodable, empty question) raises DataError, or, when `skipped` is a list, is appended
        to it ({id, image, question, where, reason}) and left out of the answers."""
        todo = [_item(x, i) for i, x in enumerate(items)]
        size = batch_size or self.batch_size
        out: list[Answer] = []
        with tqdm(total=len(todo), desc="predict", unit="q", disable=not progress) as bar:
            for start in range(0, len(todo), size):
                chunk = todo[start : start + size]
                ready = [r for r in (self._prepare(item, skipped) for item in chunk) if r is not None]
                if ready:
                    out += self._answer_batch(ready)
                bar.update(len(chunk))
        return out

    def _prepare(self, item: Item, skipped: list[dict] | None) -> dict | None:
        """The collator's item for `item` (its sample and decoded image), or None when skipped."""
        where = item.where or f"item {item.id}"
        try:
            if not str(item.question or "").strip():
                raise DataError(f"{where}: empty question")
            if isinstance(item.image, (str, Path)):
                sample = VQASample(id=item.id, image=str(item.image), question=item.question, answer="",
                                   image_row=item.image_row, image_member=item.image_member)  # fmt: skip
                image = open_image(sample, self.max_side, self.window, self.dicom_frame)
            else:
                sample = VQASample(id=item.id, image="", question=item.question, answer="")
                image = load_image(item.image, self.max_side, self.window, where, self.dicom_frame)
        except DataError as e:
            reason = str(e) if str(e).startswith(where) else f"{where}: {e}"
            if skipped is None:
                raise DataError(reason) from e
            name = item.image if isinstance(item.image, (str, Path)) else ""
            skipped.append({"id": item.id, "image": str(name), "question": item.question, "where": where,
                            "reason": reason.removeprefix(f"{where}: ")})  # fmt: skip
            return None
        return {"sample": sample, "image": image}

    def _answer_batch(self, ready: list[dict]) -> list[Answer]:
        batch = move_data_to_device(self.collator(ready), self.device)
        scored = scoring.scored_generation(self.stage, batch, self.parse)  # the test loop's own scoring
        samples = [r["sample"] for r in ready]
        return [self.answer_of(s, a, c, lp, lps) for s, a, c, lp, lps in zip(
            samples, scored["answers"], scored["completions"], scored["mean_logprobs"], scored["option_logprobs"],
            strict=True)]  # fmt: skip

    def answer_of(self, sample: VQASample, answer: str, completion: str, mean_logprob: float,
                  option_logprobs: dict[str, float] | None) -> Answer:  # fmt: skip
        """The Answer of one scored generation, its option probabilities under the predictor's temperature."""
        probs = scoring.probabilities(option_logprobs, self.temperature or 1.0)
        return Answer(id=sample.id, image=sample.image, question=sample.question, answer=answer,
                      kind="closed" if probs else "open", confidence=scoring.confidence(answer, probs),
                      options=probs, mean_logprob=float(mean_logprob), completion=completion,
                      option_logprobs=option_logprobs, calibrated=self.temperature is not None)  # fmt: skip

    def recalibrated(self, answer: Answer) -> Answer:
        """`answer` with its options and confidence under the predictor's current temperature."""
        sample = VQASample(id=answer.id, image=answer.image, question=answer.question, answer="")
        return self.answer_of(
            sample, answer.answer, answer.completion, answer.mean_logprob, answer.option_logprobs
        )


def run_temperature(run_dir: str | Path) -> float | None:
    """The temperature in the run's calibration.json when one was fitted (evaluate eval.calibrate=true, or the
    app's start), else None (the run's confidences are uncalibrated)."""
    from medvqa.eval.calibration import read_calibration

    record = read_calibration(run_dir)
    return float(record["temperature"]) if record and record.get("fitted") else None


def _item(x: Item | Mapping | Sequence, index: int) -> Item:
    if isinstance(x, Item):
        return x if x.id else Item(**(asdict(x) | {"id": str(index)}))
    if isinstance(x, Mapping):
        return Item(x["image"], x["question"], str(x.get("id") or index), x.get("image_row"),
                    x.get("image_member") or "", x.get("where") or "")  # fmt: skip
    image, question = x
    return Item(image, question, str(index))


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
