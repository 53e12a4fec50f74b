"""One tiny trained run and one app process serving it (guard=patient), shared by the app tests.

The run trains for 10 steps, so its answers are near chance and no calibrated threshold would let one
through: the server fixes `guard.thresholds` low, so that an in-scope question is answered (the calibration
is tested on hand numbers in tests/guard and on this run in test_guard_run.py). Everything else is the
shipped default: guard=patient, scope from the run's training questions, loopback host."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from medvqa.run import ROOT_DIR, compose_config, train
from tests.train_helpers import tiny_run

START_TIMEOUT = 300  # s: model load and calibration on a loaded 2-core machine


@pytest.fixture(scope="session")
def tiny_app_run(tmp_path_factory) -> Path:
    """Trained as a user trains: from its own folder with a relative `paths.data_dir`, which the run must
    store as the absolute folder it used (the app, started elsewhere, reads that data and writes none)."""
    home = tmp_path_factory.mktemp("app_home")
    out = tmp_path_factory.mktemp("app_run")
    before = os.getcwd()
    os.chdir(home)
    try:
        # every kind of the synthetic release's questions among the training ones (the scope guard's
        # reference), so the questions the app tests ask are in scope; steps stay tiny_run's 10
        train(compose_config(tiny_run("app_data", "data.limit={train:96,val:8,test:8}"), output_dir=out))
    finally:
        os.chdir(before)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_served(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(
        f"the app did not answer on {url} within {START_TIMEOUT} s:\n{log.read_text()[-4000:]}"
    )


@pytest.fixture(scope="session")
def app_server(tiny_app_run, tmp_path_factory):
    """{url, port, temp_dir, log}: `python -m medvqa.app` on a free loopback port, stopped after the tests.
    Gradio's upload folder is a fresh one, so tests can check that nothing stays in it."""
    work = tmp_path_factory.mktemp("app_server")
    port, temp_dir, log = free_port(), work / "gradio_tmp", work / "app.log"
    temp_dir.mkdir()
    (work / "cwd").mkdir()
    env = os.environ | {"GRADIO_TEMP_DIR": str(temp_dir), "PYTHONPATH": str(ROOT_DIR), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "medvqa.app", f"run={tiny_app_run}", f"app.port={port}",
               "guard.thresholds={closed:0.0,open:-1000.0}"]  # fmt: skip
    with open(log, "w") as sink:
        process = subprocess.Popen(command, cwd=work / "cwd", env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_served(process, url, log)
        yield {"url": url, "port": port, "temp_dir": temp_dir, "log": log, "cwd": work / "cwd"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def training_pngs(tiny_app_run, tmp_path_factory) -> list[Path]:
    """The run's distinct training images, each saved as a PNG as it is decoded: images like the ones the
    model was trained on, so the guard's novelty check lets them through (a pydicom CT is not)."""
    from medvqa.data.images import open_image
    from medvqa.guard.calibration import run_questions

    datamodule, _ = run_questions(tiny_app_run)
    folder, paths, seen = tmp_path_factory.mktemp("upload"), [], set()
    for sample in datamodule.splits["train"]:
        if sample.image not in seen:
            seen.add(sample.image)
            paths.append(folder / f"scan{len(paths)}.png")
            open_image(sample).save(paths[-1])
    return paths


@pytest.fixture(scope="session")
def scan_png(training_pngs) -> Path:
    return training_pngs[0]


@pytest.fixture(scope="session")
def corrupt_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("upload_bad") / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not really a picture" * 20)
    return path
