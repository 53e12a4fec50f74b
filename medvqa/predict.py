"""`python -m medvqa.predict run=outputs/<run> image=scan.png question="Is there a fracture?"`

Answer new images with a trained run (or zero-shot: `model=<name> [adapter=<folder>]`), exactly as the run's
evaluation answers its test questions (medvqa/inference/, conf/predict.yaml, docs/predict.md):
- `image=` + `question=`: prints the answer (closed questions: with the confidence);
- `inputs=questions.jsonl`, or `inputs=<folder>` + `question=`: answers in batches with a progress bar.
Every mode writes predictions.jsonl into this command's folder (hydra.run.dir); with data.on_bad_sample=skip
the skipped inputs go to skipped.jsonl there.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from medvqa.cli import override_key, raw_values, user_errors
from medvqa.io import atomic_write_jsonl

log = logging.getLogger("medvqa")
# keys a run's own config decides: given with run=, they would silently not apply
RUN_DECIDES = ("model", "adapter", "stage", "data")


def refused_with_run(overrides: list[str]) -> str | None:
    """The first command-line override that run= makes meaningless (see RUN_DECIDES), else None."""
    for override in overrides:
        key = override_key(override)
        if key == "data.on_bad_sample":
            continue
        if key.split(".", 1)[0] in RUN_DECIDES:
            return override
    return None


def check_modes(cfg: DictConfig, overrides: list[str]) -> None:
    """One of run= / model=, and one of image= / inputs=; everything else named as `key=` with the fix."""
    if cfg.run and (refused := refused_with_run(overrides)):
        raise ValueError(f"{refused} does not apply with run=: predict uses the run's own model, adapter, "
                         "prompt and decoding, so its answers equal the run's evaluation; drop it, or predict "
                         "zero-shot with model=... and no run=")  # fmt: skip
    if not cfg.run and not cfg.get("model"):
        raise ValueError("run= is missing: give run=<a finished run's folder>, or model=<name> (conf/model/) "
                         "to predict zero-shot")  # fmt: skip
    if bool(cfg.image) == bool(cfg.inputs):
        raise ValueError("give either image=<file> with question=..., or inputs=<questions.jsonl | folder>")


def collect_items(cfg: DictConfig, bad, skipped: list[dict[str, Any]]) -> list:
    """The items to answer; rows unusable before decoding are refused or skipped here (before the model)."""
    from medvqa.inference import Item
    from medvqa.inference.inputs import read_inputs

    if cfg.inputs:
        return read_inputs(cfg.inputs, cfg.question, cfg.inputs_root, bad, skipped)
    where = f"image={cfg.image}"
    if not Path(cfg.image).is_file():
        bad.report(where, "image file not found", "Give the path of an image file.")
        skipped.append({"id": Path(cfg.image).name, "image": str(cfg.image), "question": str(cfg.question or ""),
                        "where": where, "reason": "image file not found"})  # fmt: skip
        return []
    return [Item(str(cfg.image), str(cfg.question or ""), Path(cfg.image).name, where=where)]


def load_predictor(cfg: DictConfig):
    from medvqa.inference import Predictor

    if cfg.run:
        return Predictor.from_run(cfg.run, cfg.device, cfg.quantize)
    return Predictor.from_config(cfg)


def answer(cfg: DictConfig, out_dir: Path) -> list[dict[str, Any]]:
    """Answers every item, writes predictions.jsonl (and skipped.jsonl) into `out_dir`, prints a summary;
    returns the rows written. The answers are appended batch by batch (flushed each time), so an error or
    Ctrl-C keeps every answer made before it. With guard=patient|research every row also carries the
    guard's decision and the text a patient would see (medvqa/guard/batch.py)."""
    from medvqa.data.errors import BadSamples, DataError

    bad, skipped = BadSamples(cfg.data.on_bad_sample), []
    items = collect_items(cfg, bad, skipped)
    predictor = load_predictor(cfg) if items else None
    guard = load_guard(cfg, predictor) if items else None
    path = out_dir / "predictions.jsonl"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        with open(path, "w", encoding="utf-8") as out:
            for batch in answered_batches(
                cfg, items, predictor, guard, skipped if bad.mode == "skip" else None
            ):
                out.writelines(json.dumps(r, sort_keys=True) + "\n" for r in batch)
                out.flush()
                rows += batch
    except DataError as e:
        raise DataError(f"{e}. Fix or remove that input, or set data.on_bad_sample=skip to skip and count "
                        f"bad inputs ({kept(rows, path)})") from None  # fmt: skip
    except KeyboardInterrupt:
        print(f"interrupted: {kept(rows, path)}", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    finally:
        if skipped:
            atomic_write_jsonl(out_dir / "skipped.jsonl", skipped)
    if cfg.image:
        for row in rows:
            print(summary_line(row))
    print(f"answered {len(rows)} of {len(rows) + len(skipped)} inputs -> {path}")
    if skipped:
        print(f"skipped {len(skipped)} bad inputs (data.on_bad_sample=skip) -> {out_dir / 'skipped.jsonl'}")
    return rows


def kept(rows: list, path: Path) -> str:
    return f"the {len(rows)} answers made before it are in {path}"


def answered_batches(cfg: DictConfig, items: list, predictor, guard, skipped: list | None):
    """The predictions.jsonl rows of `items`, one list per batch (the predictor's batch size unless
    batch_size= is set), with a progress bar; bad items raise DataError or, when `skipped` is a list, are
    appended to it."""
    from tqdm.auto import tqdm

    if not items:
        return
    size = cfg.batch_size or predictor.batch_size

    def answer_many(todo: list) -> list:
        return predictor.answer_many(todo, size, False, skipped) if todo else []

    with tqdm(
        total=len(items), desc="predict", unit="q", disable=not (cfg.progress and not cfg.image)
    ) as bar:
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            if guard is None:
                yield [a.to_row() for a in answer_many(chunk)]
            else:
                from medvqa.guard.batch import guarded_rows

                yield guarded_rows(guard, chunk, answer_many)
            bar.update(len(chunk))


def load_guard(cfg: DictConfig, predictor):
    """The guard of guard=patient|research (calibrated now on the run's validation split), else None."""
    if cfg.get("guard") is None or cfg.guard.mode == "off":
        return None
    if not cfg.run:
        raise ValueError(f"guard={cfg.guard.mode} needs run=<a run folder>: the scope guard uses the run's "
                         "training questions and its calibration the run's validation split")  # fmt: skip
    from hydra.utils import instantiate

    return instantiate(cfg.guard)(run_dir=cfg.run, predictor=predictor)


def summary_line(row: dict[str, Any]) -> str:
    """The answer as a person reads it: closed questions with their confidence; with a guard, its decision
    and the text shown."""
    if "guard" in row:
        return f"[{row['guard']}] {row['shown_text']}  (raw answer {row['answer']!r}: {row['guard_reason']})"
    if row["kind"] == "closed" and row.get("confidence") is None:
        return f"{row['answer']}  (closed question, no confidence: the answer names none of its options)"
    if row["kind"] == "closed":
        return f"{row['answer']}  (closed question, confidence {row['confidence']:.3f})"
    return f"{row['answer']}  (open question, mean token log-probability {row['mean_logprob']:.3f})"


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def _main(cfg: DictConfig) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hydra.core.hydra_config import HydraConfig

    with user_errors():
        hydra_cfg = HydraConfig.get()
        check_modes(cfg, list(hydra_cfg.overrides.task))
        answer(cfg, Path(hydra_cfg.runtime.output_dir))


def main() -> None:
    """`python -m medvqa.predict` and `medvqa-predict`: question= (and the paths) are read as typed, commas
    and quotes included (medvqa.cli.raw_values), then Hydra parses the rest."""
    sys.argv = raw_values(sys.argv)
    _main()


if __name__ == "__main__":
    main()
