"""The app's behaviour without a server: ChatApp.upload / ask on a stand-in predictor (the guard, image
decoding and summary are the real ones), and the helpers' wording."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from PIL import Image

from medvqa.app import (
    ChatApp,
    build_blocks,
    chat_messages,
    check_question,
    is_loopback,
    pick_reference,
    plain_confidence,
)
from medvqa.data.fixtures.pictures import write_dicom
from medvqa.guard import Decision, Guard
from medvqa.guard.patterns import REFERRALS
from tests.guard.fakes import FakeAnswer


class StubPredictor:
    max_side, window, dicom_frame = 1024, None, "middle"  # how the app decodes uploads (Predictor's names)

    def __init__(self, reply: FakeAnswer):
        self.reply, self.asked = reply, []

    def answer(self, image, question):
        assert isinstance(image, Image.Image)
        self.asked.append(question)
        return self.reply


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from medvqa.guard import ScopeGuard

    scope = ScopeGuard(["Is there a lesion in this image?", "Which organ is shown?"], 0.5)
    predictor = StubPredictor(FakeAnswer("yes", "closed", confidence=0.97, calibrated=True))
    return ChatApp(predictor, Guard("patient", scope, {"closed": 0.9, "open": -0.5}))


def upload_bytes(app, tmp_path, data: bytes, name="upload.png"):
    path = tmp_path / name
    path.write_bytes(data)
    result = app.upload(str(path), app.new_state())
    assert not path.exists()  # the temporary upload is deleted once read
    return result


def png(size=(48, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 90, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_then_ask_in_and_out_of_scope(app, tmp_path):
    state, picture, status, _, summary = upload_bytes(app, tmp_path, png())
    assert "data:image/png;base64," in picture and "Image loaded" in status and "summary-link" in summary
    state, chat, box, status, _ = app.ask("Is there a lesion in this image?", state)
    assert (
        chat[-1]["content"].startswith("Answer: yes")
        and "[Answered · confidence: very sure (97 in 100)]" in chat[-1]["content"]
    )
    asked = len(app.predictor.asked)
    state, chat, *_ = app.ask("Do I have cancer?", state)
    assert len(app.predictor.asked) == asked  # never sent to the model
    assert chat[-1]["content"].startswith(REFERRALS["cancer"])
    assert [t["guard"] for t in state["turns"]] == ["answered", "referred"]


def test_dicom_upload_is_read(app, tmp_path):
    write_dicom(tmp_path / "ct.dcm", seed=1, size=64)
    _, picture, status, *_ = upload_bytes(app, tmp_path, (tmp_path / "ct.dcm").read_bytes(), "scan")
    assert "Image loaded" in status and "data:image/png" in picture


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"%PDF-1.4 not an image", "could not be opened as an image"),
     (png()[:40], "could not be opened as an image"),  # truncated
     (None, "too large to open safely")],  # a decompression bomb
)  # fmt: skip
def test_bad_uploads_get_a_message(app, tmp_path, data, message):
    if data is None:
        buffer = io.BytesIO()
        Image.new("1", (9000, 9000)).save(buffer, format="PNG")  # 81 megapixels, a few kB on disk
        data = buffer.getvalue()
    state, picture, status, *_ = upload_bytes(app, tmp_path, data)
    assert message in status and picture == "" and state["image"] is None


def test_questions_before_an_image_or_malformed(app, tmp_path):
    state, _, _, status, _ = app.ask("Which organ is shown?", app.new_state())
    assert "upload an image first" in status
    state, *_ = upload_bytes(app, tmp_path, png())
    for question, message in [("", "Please type a question."), ("x" * 10_000, "10,000 characters")]:
        new_state, _, _, status, _ = app.ask(question, state)
        assert message in status and new_state["turns"] == []


def test_a_failing_model_is_a_message(tmp_path, app, caplog):
    class Broken(StubPredictor):
        def answer(self, image, question):
            raise RuntimeError("boom: " + question)

    broken = ChatApp(Broken(None), app.guard)
    state, *_ = upload_bytes(broken, tmp_path, png())
    _, _, _, status, _ = broken.ask("Is there a lesion in this image?", state)
    assert "something went wrong" in status
    assert "Is there a lesion" not in caplog.text  # the log names the error type only


def test_research_mode_chat_shows_raw_answer_rule_and_scores(app, tmp_path):
    research = ChatApp(app.predictor, Guard("research", app.guard.scope, app.guard.thresholds))
    state, *_ = upload_bytes(research, tmp_path, png())
    state, chat, *_ = research.ask("Do I have cancer?", state)
    assert chat[-1]["content"].startswith("yes") and "rule cancer" in chat[-1]["content"]
    assert "'confidence': 0.97" in chat[-1]["content"]
    assert chat_messages(state, "research") == chat


def test_plain_confidence_words():
    closed = lambda p: Decision("answered", "", FakeAnswer("yes", confidence=p, calibrated=True))  # noqa: E731
    assert plain_confidence(closed(0.99)) == "very sure (99 in 100)"
    assert plain_confidence(closed(0.85)).startswith("fairly sure")
    assert plain_confidence(closed(0.3)).startswith("unsure")
    # open answers: exp(mean_logprob) is how steadily the model worded it, not a chance of being right
    opened = lambda p: Decision("answered", "", FakeAnswer("ct", "open", mean_logprob=math.log(p)))  # noqa: E731
    assert plain_confidence(opened(0.7)) == "somewhat unsure of its wording"
    assert plain_confidence(opened(0.97)) == "very sure of its wording"
    assert not any(c.isdigit() for c in plain_confidence(opened(0.97)))
    assert plain_confidence(Decision("referred", "")).startswith("not asked")


def test_helpers():
    assert check_question("  ", 500) and not check_question("Which organ?", 500)
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    refs = [Path("chest_ct.png"), Path("head_mri.png"), Path("abdomen_x-ray.png")]
    assert pick_reference(refs, ["head", "mri"]) == Path("head_mri.png")
    assert pick_reference(refs, ["abdomen", "x-ray"]) == Path("abdomen_x-ray.png")
    assert pick_reference(refs, ["knee", "ultrasound"]) is None


def test_reference_panel_picks_by_the_models_answers(tmp_path, app):
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("chest_ct.png", "head_mri.png"):
        Image.new("RGB", (32, 32)).save(refs / name)
    chat = ChatApp(StubPredictor(FakeAnswer("head", "open", mean_logprob=-0.1)), app.guard, str(refs),
                   reference_questions={"organ": "Which organ is shown?"})  # fmt: skip
    _, _, _, reference, _ = upload_bytes(chat, tmp_path, png())
    assert "head mri" in reference and "data:image/png" in reference


def test_missing_reference_dir_names_the_key(app):
    with pytest.raises(FileNotFoundError, match="app.reference_dir=/nowhere"):
        ChatApp(app.predictor, app.guard, "/nowhere")


class FakeBlocks:
    def launch(self, **kwargs):
        self.kwargs = kwargs


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True), ("10.1.2.3", True)])
def test_launch_is_private_and_warns_beyond_loopback(host, warned, capsys):
    import os

    from medvqa.app import launch

    demo = FakeBlocks()
    launch(demo, host, 7861, "50mb")
    assert demo.kwargs["server_name"] == host and demo.kwargs["share"] is False
    assert demo.kwargs["show_error"] is False and demo.kwargs["mcp_server"] is False
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert ("WARNING: app.host=" in capsys.readouterr().out) == warned


def test_default_config_binds_loopback():
    from hydra import compose, initialize_config_dir

    from medvqa.run import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("app", overrides=["run=x"])
    assert cfg.app.host == "127.0.0.1" and cfg.guard.mode == "patient" and cfg.app.max_question_chars == 500


def test_guard_off_is_refused_unless_allowed(app, tmp_path):
    with pytest.raises(ValueError, match="app.allow_unguarded=true") as refused:
        ChatApp(app.predictor, Guard("off"))
    from medvqa.cli import is_user_error

    assert is_user_error(refused.value)
    unguarded = ChatApp(app.predictor, Guard("off"), allow_unguarded=True)
    state, *_ = upload_bytes(unguarded, tmp_path, png())
    _, chat, *_ = unguarded.ask("Do I have cancer?", state)
    assert "[Unguarded: not checked" in chat[-1]["content"] and "Answered" not in chat[-1]["content"]
    page = build_blocks(unguarded).config
    banner = [c for c in page["components"] if c.get("props", {}).get("elem_id") == "unguarded"]
    assert banner and "UNGUARDED" in banner[0]["props"]["value"]


def test_guard_off_from_the_config_stops_before_loading_the_model():
    from medvqa.app import build

    with pytest.raises(ValueError, match="app.allow_unguarded=true"):
        build(app_config(["run=/nowhere", "guard=off"]))  # not the run= error: checked first


@pytest.mark.parametrize("arg", ["guard=null", "~guard"])
def test_guard_null_is_one_error_line(arg, capsys, monkeypatch):
    from medvqa import app as app_module

    monkeypatch.setattr(app_module, "main", lambda: pytest.fail("hydra must not run"))
    with pytest.raises(SystemExit) as exited:
        app_module.cli(["run=x", arg])
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 1 and err.startswith("Error: ") and "guard=" in err and "\n" not in err


def test_blocks_delete_stale_uploads(app):
    assert build_blocks(app).delete_cache == (60, 60)


def test_a_port_in_use_is_one_error_line(app):
    import socket

    from medvqa.app import launch
    from medvqa.cli import is_user_error

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"app.port={port}") as refused:
            launch(build_blocks(app), "127.0.0.1", port, "50mb", block=False)
    assert is_user_error(refused.value)


def app_config(overrides):
    from hydra import compose, initialize_config_dir

    from medvqa.run import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("app", overrides=overrides)


def test_an_uncalibrated_closed_confidence_is_words_without_a_number_and_says_why():
    shown = plain_confidence(Decision("answered", "", FakeAnswer("yes", confidence=0.99)))
    assert shown.startswith("very sure") and not any(c.isdigit() for c in shown)
    assert "has not been checked" in shown
