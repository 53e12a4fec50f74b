"""pydicom's 176 test files (CT / MR / CR slices, compressed, multi-frame, big-endian, palette, malformed and
non-image DICOM) through the commands, with data.on_bad_sample=skip: `predict` answers every file pydicom
decodes and lists every other with a one-line reason; a training run with them as its test split ends
with its count. Both train or load a tiny run: slow."""

from __future__ import annotations

import json
import os

import pytest

from medvqa.data.datamodule import VQADataset
from medvqa.data.sample import VQASample
from tests.data.test_dicom import CORPUS, pydicom_decodes
from tests.inference.conftest import write_jsonl
from tests.inference.test_predict import medvqa_predict


def test_the_training_dataset_skips_every_file_it_cannot_decode_and_never_raises():
    samples = [VQASample(id=str(i), image=p, question="q", answer="a") for i, p in enumerate(CORPUS)]
    dataset = VQADataset(samples, max_side=64, on_bad_sample="skip")
    decoded = {dataset[i]["sample"].image for i in range(len(dataset)) if dataset[i]["image"] is not None}
    assert decoded == {p for p in CORPUS if pydicom_decodes(p)}


@pytest.mark.slow
def test_predict_answers_what_pydicom_decodes_and_skips_the_rest_in_one_line(tiny_run_dir, tmp_path):
    inputs = write_jsonl(tmp_path / "q.jsonl", [{"image": p, "question": "Which organ is shown?", "id": str(i)}
                                                for i, p in enumerate(CORPUS)])  # absolute paths  # fmt: skip
    done = medvqa_predict(f"run={tiny_run_dir}", f"inputs={inputs}", "data.on_bad_sample=skip",
                          "progress=false", f"hydra.run.dir={tmp_path / 'out'}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    answered = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    skipped = [json.loads(x) for x in (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()]
    decodable = {p for p in CORPUS if pydicom_decodes(p)}
    assert {r["image"] for r in answered} == decodable and len(decodable) >= 89
    assert {s["image"] for s in skipped} == set(CORPUS) - decodable
    assert all(s["reason"] and "\n" not in s["reason"] and "force=True" not in s["reason"] for s in skipped)
    assert "Traceback" not in done.stdout + done.stderr and "[ERROR]" not in done.stdout + done.stderr
    assert f"answered {len(decodable)} of {len(CORPUS)} inputs" in done.stdout


@pytest.mark.slow
def test_a_training_run_with_the_corpus_as_its_test_split_ends_with_its_count(tmp_path, capsys):
    from medvqa.data.fixtures.pictures import encoded
    from medvqa.run import compose_config, train

    root = tmp_path / "jsonl"
    (root / "scans").mkdir(parents=True)
    os.symlink(os.path.dirname(CORPUS[0]), root / "pydicom")  # a dataset folder linked in, as users do
    rows = []
    for i in range(24):
        (root / "scans" / f"s{i}.png").write_bytes(encoded(i, 56, "PNG"))
        rows.append({"image": f"scans/s{i}.png", "question": "Is there a lesion?", "answer": "yes" if i % 2 else "no",
                     "split": "train" if i < 20 else "val", "patient_id": f"p{i}"})  # fmt: skip
    base = os.path.dirname(CORPUS[0])
    rows += [{"image": f"pydicom/{os.path.relpath(p, base)}", "question": "Is there a lesion?", "answer": "no",
              "split": "test", "patient_id": f"t{i}"} for i, p in enumerate(CORPUS)]  # fmt: skip
    write_jsonl(root / "data.jsonl", rows)
    overrides = ["data=jsonl", f"data.root={root}", "data.on_bad_sample=skip", "model.hidden_size=32",
                 "model.num_layers=1", "model.vision_depth=1", "model.image_size=56", "data.batch_size=4",
                 "stage.max_new_tokens=2", "stage.scheduler.num_warmup_steps=1", "trainer.max_steps=2",
                 "trainer.val_check_interval=2", "eval_untrained=false", "callbacks.progress_bar=null"]  # fmt: skip
    train(compose_config(overrides, output_dir=tmp_path / "run"))
    decodable = sum(pydicom_decodes(p) for p in CORPUS)
    count = f"test: {len(CORPUS) - decodable} of {len(CORPUS)} questions skipped (unreadable images); scores are over {decodable}"
    assert count in capsys.readouterr().out
