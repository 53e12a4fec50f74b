"""`python -m medvqa.app run=outputs/<run> [guard=patient|research|off app.allow_unguarded=true] [app.port=7860] [app.reference_dir=...]`

A Gradio Blocks app on a trained run: upload an image (PNG, JPEG or DICOM), ask questions in a chat, see
each answer with its guard decision (medvqa/guard/) and a plain-language confidence, keep a summary page.

Privacy by construction: binds 127.0.0.1 unless `app.host` says otherwise (then a warning), no share link,
Gradio analytics off, the image and the questions live in the session's state only (never logged, never
written: the image is shown and the summary downloaded through data: URIs; the upload's temporary file is
deleted as soon as it is read). Bad input is a message in the page, never a stack trace. docs/app.md.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from pathlib import Path
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported anywhere; not overridable

import hydra
from omegaconf import DictConfig

from medvqa.cli import user_errors
from medvqa.guard.confidence_words import confidence_status, plain_confidence
from medvqa.guard.guard import Decision, Guard
from medvqa.guard.novelty import NOVEL_TEXT
from medvqa.inference.app_sessions import DROPPED, NoUploadDownloads, SessionLog, remove_upload
from medvqa.reports.summary import image_data_uri, session_summary, summary_link

log = logging.getLogger("medvqa")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".tif", ".tiff")
GUARD_LABELS = {"answered": "Answered", "referred": "Referred to your doctor", "abstained": "Not sure"}
NO_IMAGE = "Please upload an image first (PNG, JPEG or DICOM)."


def check_question(question: str | None, max_chars: int) -> str:
    """'' for a usable question, else the message to show."""
    text = (question or "").strip()
    if not text:
        return "Please type a question."
    if len(text) > max_chars:
        return f"That question is {len(text):,} characters long; please keep it under {max_chars} characters."
    return ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ChatApp:
    """The app's behaviour, separate from its layout: `upload` and `ask` take and return the session state
    (a dict: image, turns) plus what the page shows. `predictor`: medvqa.inference.Predictor; uploads are
    decoded with its own `max_side` and `window` (the run's data.max_image_side, data.window), so the app
    answers a file exactly as predict / evaluate do. A guard in mode off needs `allow_unguarded`."""

    def __init__(self, predictor, guard: Guard, reference_dir: str | None = None, max_question_chars: int = 500,
                 reference_questions: dict[str, str] | None = None, allow_unguarded: bool = False,
                 max_turns: int = 50):  # fmt: skip
        check_unguarded(guard.mode, allow_unguarded)
        self.predictor, self.guard = predictor, guard
        self.max_question_chars, self.max_turns = max_question_chars, max_turns
        self.sessions = SessionLog()  # session hashes that held an image: a dropped one is told so
        self.max_side, self.window = predictor.max_side, predictor.window
        self.references = reference_images(reference_dir)
        self.reference_questions = reference_questions or {}

    @staticmethod
    def new_state() -> dict[str, Any]:
        return {"image": None, "turns": []}

    def upload(self, path: str | None, state: dict, session: str | None = None) -> tuple:
        """(state, image html, status, reference html, summary html) for an uploaded file. `session`:
        Gradio's session hash (remembered, so that a session whose state was dropped is told so). An image
        unlike the training images (the guard's novelty check) is kept, but no question about it is
        answered."""
        from medvqa.data.errors import DataError
        from medvqa.data.images import load_image

        state = state or self.new_state()
        if not path:
            return state, "", NO_IMAGE, "", self.summary(state)
        data = read_and_delete(path)
        try:
            image = load_image(
                data, self.max_side, self.window, "the uploaded file", self.predictor.dicom_frame
            )
        except DataError as e:
            kept = image_html(state["image"], "your image") if state.get("image") is not None else ""
            return state, kept, upload_problem(str(e)), state.get("reference", ""), self.summary(state)
        # a new image starts a new conversation
        novelty = self.guard.image_verdict(image)
        novel = novelty is not None and novelty.novel
        state = {"image": image, "turns": [], "novelty": novelty,
                 "reference": "" if novel else self.reference_panel(image)}  # fmt: skip
        self.sessions.held_image(session)
        status = NOVEL_TEXT if novel else "Image loaded. Ask a question about it."
        return state, image_html(image, "your image"), status, state["reference"], self.summary(state)

    def ask(self, question: str | None, state: dict, session: str | None = None) -> tuple:
        """(state, chat messages, question box, status, summary html) after one question; at most
        `max_turns` questions per image, so a session's memory stays bounded."""
        state = state or self.new_state()
        if self.sessions.was_dropped(session, state):
            problem = DROPPED
        elif state.get("image") is None:
            problem = NO_IMAGE
        elif len(state.get("turns", [])) >= self.max_turns:
            problem = (f"This conversation has reached {self.max_turns} questions. Download the summary, then "
                       "upload your image again to ask more.")  # fmt: skip
        else:
            problem = check_question(question, self.max_question_chars)
        if problem:
            return state, chat_messages(state, self.guard.mode), question or "", problem, self.summary(state)
        text = question.strip()
        try:
            decision = self.guard.decide(text, lambda q: self.predictor.answer(state["image"], q),
                                         state.get("novelty"))  # fmt: skip
        except Exception as e:  # the page says so; the log gets the error type only, never the question
            log.error("answering failed: %s", type(e).__name__)
            return state, chat_messages(state, self.guard.mode), text, \
                "Sorry, something went wrong while answering. Please try again.", self.summary(state)  # fmt: skip
        state = state | {"turns": [*state["turns"], turn(text, decision)]}
        return state, chat_messages(state, self.guard.mode), "", "", self.summary(state)

    def summary(self, state: dict) -> str:
        if not state or state.get("image") is None:
            return ""
        return summary_link(session_summary(state["image"], state["turns"], self.guard.mode,
                                            disclaimer=self.guard.disclaimer))  # fmt: skip

    def reference_panel(self, image) -> str:
        """The healthy example for this kind of image, chosen by the model's own organ / modality answers
        to `app.reference_questions` (asked outside the chat, never stored)."""
        if not self.references:
            return ""
        said = [self.predictor.answer(image, q).answer for q in self.reference_questions.values()]
        path = pick_reference(self.references, said)
        if path is None:
            return "<p>No healthy example is available for this kind of image.</p>"
        from medvqa.data.images import load_image

        picture = load_image(path, self.max_side, self.window, str(path), self.predictor.dicom_frame)
        caption = f"A healthy example ({path.stem.replace('_', ' ')}), for comparison only."
        return image_html(picture, caption)


UNGUARDED = (
    "UNGUARDED (guard=off, app.allow_unguarded=true): every question goes to the model and its raw answer is "
    "shown, with no scope check, no abstention and no disclaimer. For research only, never for patients."
)


def check_unguarded(mode: str, allow: bool) -> None:
    """guard=off serves raw answers to whoever opens the page: only when the user says so."""
    if mode == "off" and not allow:
        raise ValueError(
            "guard=off shows the model's raw answers with no scope check, abstention or disclaimer; the app "
            "refuses it unless app.allow_unguarded=true (research only), else use guard=patient or "
            "guard=research"
        )


def check_overrides(argv: list[str]) -> None:
    """Overrides Hydra cannot compose, answered as a user error before it tries (`guard=null`, `~guard`)."""
    for arg in argv:
        if arg in ("guard=null", "guard=", "~guard", "guard=~") or arg.startswith("~guard="):
            raise ValueError(f"{arg}: the app needs a guard; use guard=patient, guard=research or guard=off")


def turn(question: str, decision: Decision) -> dict[str, Any]:
    """One question's record in the session (and the summary)."""
    answer = decision.answer
    return {"question": question, "shown_text": decision.shown_text, "guard": decision.guard,
            "rule": decision.rule, "reason": decision.reason, "confidence_text": plain_confidence(decision),
            "raw_answer": answer.answer if answer is not None else "",
            "scores": _scores(answer)}  # fmt: skip


def _scores(answer) -> dict[str, Any]:
    if answer is None:
        return {}
    return {"kind": answer.kind, "confidence": answer.confidence, "mean_logprob": answer.mean_logprob,
            "options": answer.options}  # fmt: skip


def chat_messages(state: dict, mode: str) -> list[dict[str, str]]:
    """The chat as Gradio messages: each question, then its answer with the decision and confidence (in
    research mode: the raw answer, the rule and the scores)."""
    messages = []
    for t in state.get("turns", []):
        messages.append({"role": "user", "content": t["question"]})
        label = "Unguarded: not checked" if mode == "off" else GUARD_LABELS[t["guard"]]
        footer = f"[{label} · confidence: {t['confidence_text']}]"
        if mode == "research":
            footer += (
                f"\n[patient mode: {t['guard']} by rule {t['rule']}: {t['reason']}]\n[scores: {t['scores']}]"
            )
        messages.append({"role": "assistant", "content": f"{t['shown_text']}\n\n{footer}"})
    return messages


def read_and_delete(path: str) -> bytes:
    """The upload's bytes; Gradio's temporary copy and its hash-named folder are removed at once, so the
    image lives in memory only (medvqa/inference/app_sessions.py)."""
    try:
        return Path(path).read_bytes()
    finally:
        remove_upload(path)


def upload_problem(error: str) -> str:
    if "over the" in error and "limit" in error:
        return (
            "This image is too large to open safely (over 8192 x 8192 pixels). Please upload a smaller image."
        )
    return "This file could not be opened as an image. Please upload a PNG, JPEG or DICOM file."


def image_html(image, caption: str) -> str:
    from html import escape

    return (f'<figure class="medvqa-figure"><img src="{image_data_uri(image)}" alt="{escape(caption)}" '
            f'style="width:min(100%,20rem);height:auto"><figcaption>{escape(caption)}</figcaption></figure>')  # fmt: skip


def reference_images(folder: str | None) -> list[Path]:
    if not folder:
        return []
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"app.reference_dir={folder} is not a folder; point it at a folder of healthy "
                                "example images named by organ and modality (e.g. chest_ct.png), or drop it")  # fmt: skip
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def pick_reference(paths: list[Path], said: list[str]) -> Path | None:
    """The reference whose file name names the most of the model's answers (organ, modality), if any."""
    words = [w.lower().replace("-", "") for w in said if w.strip()]

    def hits(p: Path) -> int:
        name = p.stem.lower().replace("-", "")
        return sum(w in name for w in words)

    best = max(paths, key=hits, default=None)
    return best if best is not None and hits(best) > 0 else None


INTRO = (
    "Upload your image and ask simple questions about what it shows: the kind of scan, the body part, the view. "
    "This is a research demo, not a doctor: questions about what the image means for your health are for "
    "your doctor."
)


CACHE = (60, 60)  # gr.Blocks(delete_cache=(every s, older than s))


def build_blocks(chat: ChatApp, session_ttl_s: float | None = 3600):
    """The page: upload and image on the left (and the healthy example when configured), the chat and the
    summary link on the right. Every event keeps the session's state in a gr.State (memory only)."""
    import gradio as gr

    research = chat.guard.mode == "research"
    # delete_cache: every minute, Gradio deletes cached files over a minute old, so an upload whose tab
    # closed before its event ran (and so was never read and deleted) does not stay on disk
    with gr.Blocks(analytics_enabled=False, title="medvqa: ask about your scan", delete_cache=CACHE) as demo:
        # Gradio drops a session's state when its tab closes; the time to live also forgets an idle one
        state = gr.State(ChatApp.new_state(), time_to_live=session_ttl_s)
        gr.Markdown("## Ask about your scan" + (" (research mode: raw model output)" if research else ""))
        if chat.guard.mode == "off":
            gr.Markdown(f"**{UNGUARDED}**", elem_id="unguarded")
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Your image (PNG, JPEG or DICOM)", type="filepath", elem_id="upload")
                picture = gr.HTML(elem_id="picture")
                reference = gr.HTML(elem_id="reference", visible=bool(chat.references))
            with gr.Column(scale=2):
                chatbot = gr.Chatbot(label="Questions and answers", elem_id="chat", render_markdown=False,
                                     feedback_options=None, height=420, buttons=["copy", "copy_all"])  # fmt: skip
                question = gr.Textbox(label="Your question", elem_id="question", max_lines=4,
                                      placeholder="e.g. Which organ is shown?")  # fmt: skip
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
                status = gr.Markdown(elem_id="status")
                summary = gr.HTML(elem_id="summary")
        gr.Markdown(f"*{chat.guard.disclaimer}*")

        def on_upload(path, session, request: gr.Request):  # the file field is emptied: ready for the next
            return (*chat.upload(path, session, request.session_hash), None)

        def on_ask(text, session, request: gr.Request):
            return chat.ask(text, session, request.session_hash)

        for handler in (on_upload, on_ask):  # the class itself: Gradio finds gr.Request by annotation, and
            handler.__annotations__["request"] = gr.Request  # this module's postponed ones are strings

        shown = [state, picture, status, reference, summary, upload]
        upload.upload(on_upload, [upload, state], shown, api_name="upload")
        outputs = [state, chatbot, question, status, summary]
        ask.click(on_ask, [question, state], outputs, api_name="ask")
        question.submit(on_ask, [question, state], outputs, api_name=False)
    return demo


def launch(demo, host: str, port: int, max_file_size: str, block: bool = True, max_sessions: int = 64):
    """Serve on host:port: no share link, no monitoring or MCP endpoints, errors shown as messages only; at
    most `max_sessions` sessions held (Gradio drops the least recently used first), nothing served from
    Gradio's upload folder (medvqa/inference/app_sessions.py)."""
    from starlette.middleware import Middleware

    if not is_loopback(host):
        print(f"WARNING: app.host={host} listens beyond this machine: anyone who can reach it can upload images "
              "and read answers. Use app.host=127.0.0.1 unless the network is trusted.", flush=True)  # fmt: skip
    try:
        return demo.launch(server_name=host, server_port=port, share=False, show_error=False, quiet=True,
                           max_file_size=max_file_size, enable_monitoring=False, mcp_server=False,
                           ssr_mode=False, footer_links=[], prevent_thread_lock=not block,
                           state_session_capacity=max_sessions,
                           app_kwargs={"middleware": [Middleware(NoUploadDownloads)]})  # fmt: skip
    except OSError as e:  # Gradio: "Cannot find empty port in range: 7860-7860"
        if "port" not in str(e).lower():
            raise
        raise ValueError(
            f"app.port={port} on {host} is in use (another app, or an earlier one still running); stop it or "
            "pick a free port with app.port=<port>"
        ) from None


def build(cfg: DictConfig) -> ChatApp:
    """The predictor of `run`, its guard (calibrated now, on the run's validation split) and the app."""
    from hydra.utils import instantiate

    from medvqa.inference import Predictor

    app = cfg.app
    if not cfg.get("guard"):
        raise ValueError("guard=null: the app needs a guard; use guard=patient, guard=research or guard=off")
    allow = bool(app.get("allow_unguarded", False))
    check_unguarded(cfg.guard.get("mode"), allow)  # before minutes of model loading
    predictor = Predictor.from_run(cfg.run, device=cfg.device)
    started = time.time()
    guard = instantiate(cfg.guard)(run_dir=cfg.run, predictor=predictor)
    print(
        f"guard={guard.mode}: ready in {time.time() - started:.1f} s; thresholds {guard.thresholds}",
        flush=True,
    )
    print(confidence_status(predictor), flush=True)
    if guard.mode == "off":
        print(f"WARNING: {UNGUARDED}", flush=True)
    return ChatApp(predictor, guard, app.reference_dir, app.max_question_chars,
                   dict(app.reference_questions or {}), allow, int(app.get("max_turns", 50)))  # fmt: skip


@hydra.main(version_base="1.3", config_path="../conf", config_name="app")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with user_errors():
        chat = build(cfg)
        print(f"medvqa app on http://{cfg.app.host}:{cfg.app.port} (guard={chat.guard.mode})", flush=True)
        launch(build_blocks(chat, cfg.app.session_ttl_s), cfg.app.host, int(cfg.app.port), cfg.app.max_file_size,
               max_sessions=int(cfg.app.max_sessions))  # fmt: skip


def cli(argv: list[str] | None = None) -> None:
    """`python -m medvqa.app ...`: the overrides Hydra would crash on are a one-line error first."""
    import sys

    with user_errors():
        check_overrides(sys.argv[1:] if argv is None else argv)
    main()


if __name__ == "__main__":
    cli()
