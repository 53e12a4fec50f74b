"""The app's session summary: one self-contained HTML page (image embedded) for the patient to keep and
bring to the doctor: every question with its answer and guard decision, the date, the disclaimer.

    html = session_summary(image, turns, mode="patient", when=datetime.now())

Rendered in memory; the app hands it to the browser as a data: link, so it is never written on the server.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from PIL import Image

from medvqa.guard.output import DISCLAIMER

TEMPLATES = Path(__file__).parent / "templates"
GUARD_WORDS = {
    "answered": "answered",
    "referred": "referred to your doctor",
    "abstained": "not sure: please ask your doctor",
}


def image_data_uri(image: Image.Image, max_side: int = 768) -> str:
    """The image as a PNG data: URI (shrunk to `max_side`), for pages that must not load files."""
    copy = image.copy()
    copy.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    copy.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def session_summary(image: Image.Image | None, turns: list[dict], mode: str = "patient",
                    when: datetime | None = None, disclaimer: str = DISCLAIMER) -> str:  # fmt: skip
    """The page. `turns`: dicts with `question`, `shown_text`, `guard`, `confidence_text` and, in research
    mode, `raw_answer` and `reason`; text is escaped (a question is never markup)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    when = when or datetime.now()
    return env.get_template("summary.html.j2").render(
        image=image_data_uri(image) if image is not None else None,
        turns=[t | {"guard_words": GUARD_WORDS.get(t.get("guard", ""), t.get("guard", ""))} for t in turns],
        mode=mode, date=when.strftime("%d %B %Y, %H:%M"), disclaimer=disclaimer,
    )  # fmt: skip


def summary_link(html: str, label: str = "Download summary (HTML)") -> str:
    """An <a download> whose href carries the page itself: the browser saves it, the server keeps nothing."""
    href = "data:text/html;charset=utf-8;base64," + base64.b64encode(html.encode("utf-8")).decode("ascii")
    return (
        f'<a id="summary-link" class="summary-link" download="medvqa-summary.html" href="{href}">{label}</a>'
    )
