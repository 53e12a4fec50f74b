"""Multi-stage pipelines: every experiment's stage plan, a curriculum run end to end, chaining, resume."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from experiment_helpers import EXPERIMENTS, TINY
from omegaconf import OmegaConf, open_dict
from safetensors.torch import load_file

from medvqa.data.filters import select
from medvqa.data.sample import VQASample
from medvqa.pipeline import run_pipeline, stage_config, stage_filters, stage_plan
from medvqa.run import CONF_DIR, compose_config, run, train


def _experiment(name, data_dir, out, *extra):
    """Unresolved, as @hydra.main hands it over: each stage's ${paths.output_dir} then points into its folder."""
    steps = (
        "pipeline.max_steps=2"
        if "pipeline" in OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml")
        else "trainer.max_steps=2"
    )
    cfg = compose_config([f"experiment={name}", *TINY, steps, f"paths.data_dir={data_dir}", *extra])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_plans_its_stages(path, data_dir, tmp_path):
    """Each stage: its kind, 2 steps, its own folder, filters by mode, and the adapter it starts from."""
    lines = path.read_text().splitlines()
    assert lines[0] == "# @package _global_" and lines[1].startswith(
        f"# python -m medvqa.run experiment={path.stem}"
    )
    cfg = _experiment(path.stem, data_dir, tmp_path)
    if not cfg.get("pipeline"):
        return  # a single-stage experiment: composing is its check here
    plan, mode = stage_plan(cfg), cfg.pipeline.mode
    for i, stage in enumerate(plan):
        if i:  # chaining checks that the previous stage left an adapter: stand one in
            (tmp_path / plan[i - 1]["dir"] / "adapter").mkdir(parents=True)
            (tmp_path / plan[i - 1]["dir"] / "adapter" / "adapter_config.json").write_text("{}")
        scfg = stage_config(cfg, plan, i, tmp_path)
        assert scfg.trainer.max_steps == 2 and scfg.pipeline is None
        assert scfg.paths.output_dir == str(tmp_path / f"stages/{i + 1}_{stage['name']}")
        own = [plan[j]["filters"] for j in range(i + 1)]
        assert OmegaConf.to_container(scfg.data.filters) == (own if mode == "cumulative" and i else own[-1])
        previous = str(tmp_path / plan[i - 1]["dir"] / "adapter") if i else None
        assert scfg.stage.init_adapter == (None if stage["init"] == "base" else previous)
        assert OmegaConf.select(scfg, "stage._target_").endswith(f"{stage['kind'].upper()}Module")


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_runs_two_steps_per_stage(path, data_dir, tmp_path):
    cfg = _experiment(path.stem, data_dir, tmp_path)
    metrics = run(cfg)
    assert metrics["test"]
    if cfg.get("pipeline"):
        summary = OmegaConf.load(tmp_path / "summary.json")
        assert [r["name"] for r in summary.stages] == [s.name for s in cfg.pipeline.stages]
        assert all((tmp_path / r["dir"] / "metrics.json").is_file() for r in summary.stages)


@pytest.fixture(scope="module")
def curriculum(tmp_path_factory, data_dir):
    """exp4_curriculum, 2 steps per stage; stages 2 and 3 at learning rate 0, so their saved adapters are
    exactly the weights they started from; stage 3 starts from the base model instead (init: base)."""
    out = tmp_path_factory.mktemp("curriculum")
    cfg = _experiment("exp4_curriculum", data_dir, out)
    with open_dict(cfg):
        cfg.pipeline.stages[1].overrides["stage.lr"] = 0.0
        cfg.pipeline.stages[2].overrides["stage.lr"] = 0.0
        cfg.pipeline.stages[2].init = "base"
    return cfg, out, run(cfg)


def _adapter(out, stage_dir):
    return load_file(str(out / stage_dir / "adapter" / "adapter_model.safetensors"))


def test_stage_starts_from_the_previous_stage_adapter(curriculum):
    _, out, _ = curriculum
    easy, medium, hard = (_adapter(out, d) for d in ("stages/1_easy", "stages/2_medium", "stages/3_hard"))
    b_keys = [k for k in easy if "lora_B" in k]
    assert b_keys and all(easy[k].abs().sum() > 0 for k in b_keys)  # stage 1 trained (B starts at zero)
    assert easy.keys() == medium.keys() and all(torch.equal(easy[k], medium[k]) for k in easy)
    assert all(hard[k].abs().sum() == 0 for k in b_keys)  # init: base -> a fresh adapter, not stage 1's


def test_summary_has_test_metrics_after_each_stage(curriculum):
    cfg, out, metrics = curriculum
    summary = OmegaConf.to_container(OmegaConf.load(out / "summary.json"))
    assert [r["name"] for r in summary["stages"]] == ["easy", "medium", "hard"]
    for row in summary["stages"]:
        assert (
            row["test"] == OmegaConf.to_container(OmegaConf.load(out / row["dir"] / "metrics.json"))["test"]
        )
        assert {"test/closed_acc", "test/open_recall", "test/loss"} <= set(row["test"])
    # the same test split after every stage: 8 questions each, same ids
    ids = [
        [line for line in (out / r["dir"] / "predictions.jsonl").read_text().splitlines()]
        for r in summary["stages"]
    ]
    assert all(len(i) == 8 for i in ids)
    assert metrics["test"] == summary["stages"][-1]["test"]
    table = (out / "summary.md").read_text()
    assert all(f"{i + 1}. {n}" in table for i, n in enumerate(["easy", "medium", "hard"]))
    assert f"{summary['stages'][0]['test']['test/loss']:.3f}" in table
    # report.html compares the stages: one column per stage, in order (docs/report.md)
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["easy", "medium", "hard"] and report["shared"] == 8
    assert (out / "report.html").read_text().count('<th class="run-col">') == 3


def test_resume_skips_finished_stages_and_continues_the_interrupted_one(curriculum, tmp_path):
    cfg, out, metrics = curriculum
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "stages/3_hard/metrics.json").unlink()  # killed during stage 3, after its last checkpoint
    assert (copy / "stages/3_hard/checkpoints/last.ckpt").is_file()
    calls = []

    def spy(scfg):
        calls.append((scfg.paths.output_dir, scfg.ckpt_path))
        return train(scfg)

    cfg = cfg.copy()
    cfg.paths.output_dir = str(copy)
    resumed = run_pipeline(cfg, spy)
    assert calls == [(str(copy / "stages/3_hard"), "last")]
    assert resumed["stages"]["easy"] == metrics["stages"]["easy"]
    assert resumed["test"].keys() == metrics["test"].keys()


def _sample(i, qtype, answer_type="CLOSED"):
    return VQASample(
        id=str(i), image="x.jpg", question="q", answer="yes", answer_type=answer_type, question_type=qtype
    )


def test_cumulative_filters_are_the_union_of_earlier_stages_in_data_order():
    samples = [_sample(0, "PLANE"), _sample(1, "ORGAN"), _sample(2, "PRES"), _sample(3, "MODALITY", "OPEN"),
               _sample(4, "PRES, POS")]  # fmt: skip
    cfg = OmegaConf.create(
        {"data": {"filters": {"answer_type": "closed"}}, "pipeline": {"mode": "cumulative"}}
    )
    plan = [{"filters": {"question_type": ["MODALITY", "PLANE"]}}, {"filters": {"question_type": "ORGAN"}},
            {"filters": {"question_type": ["POS"]}}]  # fmt: skip
    assert [s.id for s in select(samples, stage_filters(cfg, plan, 0))] == ["0"]  # 3 is open: run filter kept
    assert [s.id for s in select(samples, stage_filters(cfg, plan, 1))] == ["0", "1"]
    assert [s.id for s in select(samples, stage_filters(cfg, plan, 2))] == ["0", "1", "4"]
    cfg.pipeline.mode = "sequential"
    assert [s.id for s in select(samples, stage_filters(cfg, plan, 2))] == ["4"]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"name": "a", "kind": "nosuch"}], "pipeline.stages[0].kind=nosuch: no conf/stage/nosuch.yaml"),
        ([{"name": "a"}, {"name": "a"}], "pipeline.stages[1].name=a is used twice"),
        ([{"name": "a", "filter": {}}], "pipeline.stages[0]: unknown keys ['filter']"),
        ([], "pipeline.stages is empty"),
    ],
)
def test_bad_plans_name_the_stage_and_key(stages, message, data_dir, tmp_path):
    cfg = compose_config([f"paths.data_dir={data_dir}"], output_dir=tmp_path)
    with open_dict(cfg):
        cfg.pipeline = {"mode": "sequential", "stages": stages}
    with pytest.raises(
        (ValueError, KeyError, FileNotFoundError), match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        stage_plan(cfg)


def test_an_override_of_a_key_the_run_lacks_is_refused(data_dir, tmp_path):
    cfg = compose_config([f"paths.data_dir={data_dir}"], output_dir=tmp_path)
    with open_dict(cfg):
        cfg.pipeline = {"mode": "sequential", "stages": [{"name": "a", "overrides": {"trainer.max_step": 5}}]}
    with pytest.raises(
        KeyError, match=r"pipeline.stages\[0\].overrides: trainer.max_step is not a config key"
    ):
        stage_config(cfg, stage_plan(cfg), 0, tmp_path)


def test_the_summary_names_the_stage_best_on_validation_not_on_test(curriculum):
    """Stage 1 validates best and stage 2 tests best: the summary names stage 1, with test beside it."""
    from medvqa.pipeline import best_stage, summary_markdown

    rows = [{"name": "easy", "kind": "sft", "train_samples": 4, "val": {"val/closed_acc": 0.8},
             "test": {"test/closed_acc": 0.5}},
            {"name": "hard", "kind": "sft", "train_samples": 4, "val": {"val/closed_acc": 0.6},
             "test": {"test/closed_acc": 0.9}}]  # fmt: skip
    table = summary_markdown(rows, "val/closed_acc", "max")
    assert "best stage on validation val/closed_acc: 1. easy; test is reported, never used to choose" in table
    assert (
        "| 1. easy | sft | 4 | 0.800 (best) | 0.500 |" in table
        and "| 2. hard | sft | 4 | 0.600 | 0.900 |" in table
    )
    assert best_stage(rows, "val/closed_acc", "min") == 1 and best_stage(rows, "val/loss") is None
    # the curriculum run's own summary reads each stage's validation score from its metrics.json
    _, out, _ = curriculum
    summary = OmegaConf.to_container(OmegaConf.load(out / "summary.json"))
    assert all("val/closed_acc" in r["val"] for r in summary["stages"])
    assert "best stage on validation val/closed_acc: " in (out / "summary.md").read_text()
