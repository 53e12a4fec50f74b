"""The app's footprint per session: at most app.max_sessions held (the least recently used dropped first,
and told so), at most app.max_turns questions per image. Served in-process on a stand-in predictor."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from medvqa.app import ChatApp, build_blocks, launch
from medvqa.guard import Guard, ScopeGuard
from medvqa.inference.app_sessions import DROPPED
from tests.app.conftest import free_port
from tests.app.test_app_logic import StubPredictor, upload_bytes
from tests.guard.fakes import FakeAnswer


def chat_app(**kwargs) -> ChatApp:
    scope = ScopeGuard(["Is there a lesion in this image?", "Which organ is shown?"], 0.5)
    predictor = StubPredictor(FakeAnswer("yes", "closed", confidence=0.97))
    return ChatApp(predictor, Guard("patient", scope, {"closed": 0.9, "open": -0.5}), **kwargs)


def png_file(tmp_path, shade: int):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (shade, shade, shade)).save(buffer, format="PNG")
    path = tmp_path / f"scan{shade}.png"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def served(tmp_path):
    app = chat_app()
    demo = build_blocks(app)
    port = free_port()
    launch(demo, "127.0.0.1", port, "50mb", block=False, max_sessions=2)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_the_oldest_session_is_dropped_past_max_sessions_and_told(served, tmp_path):
    from gradio_client import Client, handle_file

    clients = [Client(served, verbose=False, analytics_enabled=False) for _ in range(3)]
    for shade, client in zip((40, 120, 200), clients, strict=True):
        _, status, *_ = client.predict(handle_file(str(png_file(tmp_path, shade))), api_name="/upload")
        assert "Image loaded" in status
    # three sessions with max_sessions=2: the first (least recently used) was dropped, the newest kept
    _, _, status, _ = clients[0].predict("Is there a lesion in this image?", api_name="/ask")
    assert status == DROPPED
    chat, _, status, _ = clients[2].predict("Is there a lesion in this image?", api_name="/ask")
    assert status == "" and "Answer: yes" in str(chat[-1]["content"])


def test_a_new_session_is_asked_for_an_image_not_told_it_was_dropped(tmp_path):
    app = chat_app()
    _, _, _, status, _ = app.ask("Is there a lesion in this image?", app.new_state(), "fresh-session")
    assert "upload an image first" in status


def test_questions_per_image_are_bounded(tmp_path):
    app = chat_app(max_turns=2)
    state, *_ = upload_bytes(app, tmp_path, png_file(tmp_path, 90).read_bytes())
    for _ in range(2):
        state, _, _, status, _ = app.ask("Is there a lesion in this image?", state)
        assert status == ""
    state, _, _, status, _ = app.ask("Is there a lesion in this image?", state)
    assert "reached 2 questions" in status and len(state["turns"]) == 2
