"""A bounded load test through gradio_client: several sessions at once, each with its own image, asking in
parallel; every answer and every summary belongs to the session's own image (nothing crosses sessions)."""

from __future__ import annotations

import base64
import re
from concurrent.futures import ThreadPoolExecutor

from medvqa.reports.summary import image_data_uri

SESSIONS, QUESTIONS = 4, ["Which organ is shown?", "What imaging modality was used?", "In which plane was this image taken?"]  # fmt: skip


def _text(message: dict) -> str:
    """A chat message's text: gradio_client gives a string or a list of parts."""
    content = message["content"]
    if isinstance(content, (list, tuple)):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def session(url: str, image_path) -> dict:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, analytics_enabled=False)
    picture, status, *_ = client.predict(handle_file(str(image_path)), api_name="/upload")
    shown = []
    for question in QUESTIONS:
        chat, _, _, summary = client.predict(question, api_name="/ask")
        shown.append(_text(chat[-1]))
    page = base64.b64decode(re.search(r"base64,([^\"]+)\"", summary).group(1)).decode()
    return {"picture": picture, "status": status, "shown": shown, "page": page}


def test_parallel_sessions_keep_their_own_image_and_answers(app_server, training_pngs, tiny_app_run):
    from medvqa.data.images import load_image
    from medvqa.inference import Predictor

    images = training_pngs[:SESSIONS]
    assert len(images) == SESSIONS
    with ThreadPoolExecutor(SESSIONS) as pool:
        results = list(pool.map(lambda p: session(app_server["url"], p), images, timeout=600))  # bounded
    predictor = Predictor.from_run(tiny_app_run)
    uris = [image_data_uri(load_image(p, predictor.max_side, predictor.window)) for p in images]
    assert len(set(uris)) == SESSIONS  # distinct images, so a crossing would show
    for n, (path, result) in enumerate(zip(images, results, strict=True)):
        assert "Image loaded" in result["status"]
        assert uris[n] in result["picture"] and uris[n] in result["page"]
        assert not any(uri in result["page"] for m, uri in enumerate(uris) if m != n)
        for question, shown in zip(QUESTIONS, result["shown"], strict=True):
            expected = predictor.answer(str(path), question).answer
            assert shown.startswith(f"Answer: {expected}\n"), (n, question, shown[:80], expected)
            assert question in result["page"]
