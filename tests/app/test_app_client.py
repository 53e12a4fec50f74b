"""The app through gradio_client (its HTTP API, as another program would drive it), its privacy defaults,
and bad input answered with a message."""

from __future__ import annotations

import base64
import re
import socket
from pathlib import Path

import psutil
import pytest

from medvqa.guard.patterns import REFERRALS
from medvqa.reports.summary import session_summary


def summary_page(link_html: str) -> str:
    href = re.search(r'href="data:text/html;charset=utf-8;base64,([^"]+)"', link_html)
    assert href, link_html[:200]
    return base64.b64decode(href.group(1)).decode("utf-8")


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server["url"], verbose=False, analytics_enabled=False)


def test_client_uploads_asks_and_gets_the_summary(client, app_server, scan_png, corrupt_png):
    from gradio_client import handle_file

    picture, status, _reference, summary, field = client.predict(
        handle_file(str(scan_png)), api_name="/upload"
    )
    assert "data:image/png;base64," in picture and "Image loaded" in status and summary and field is None
    # an open question: the 10-step model's answer to a yes/no one may name neither option, and then it has
    # no confidence and the guard (rightly) abstains
    chat, box, status, summary = client.predict("Which organ is shown?", api_name="/ask")
    assert box == "" and status == ""
    assert chat[-1]["role"] == "assistant" and "[Answered" in _text(chat[-1]), chat[-1]
    chat, *_, summary = client.predict("Do I have cancer?", api_name="/ask")
    assert REFERRALS["cancer"] in _text(chat[-1]) and "[Referred to your doctor" in _text(chat[-1])
    page = summary_page(summary)
    assert "Which organ is shown?" in page and "Do I have cancer?" in page
    assert "data:image/png;base64," in page and "not a diagnosis" in page
    _, status, *_ = client.predict(handle_file(str(corrupt_png)), api_name="/upload")
    assert "could not be opened as an image" in status
    # the uploads' temporary files are gone: the images live in the session's memory only (Gradio leaves
    # the empty placeholder files of its multipart parser behind; they hold no byte of the upload)
    kept = [p for p in Path(app_server["temp_dir"]).rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert kept == []


def _text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, list):  # gradio_client may give a list of parts
        return " ".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "Please type a question."),
        ("   ", "Please type a question."),
        ("x" * 10_000, "10,000 characters"),
    ],
)
def test_bad_questions_get_a_message(client, question, message):
    chat, box, status, _ = client.predict(question, api_name="/ask")
    assert message in status and "Traceback" not in status


def test_the_app_never_logs_questions(app_server):
    log = Path(app_server["log"]).read_text()
    assert "Do I have cancer" not in log and "Is there a lesion" not in log and "Traceback" not in log
    # and writes nothing where it runs (no Hydra log file or .hydra folder, no upload copies, and no copy
    # of the run's dataset: the run stored its data's absolute folder, which the guard read)
    assert list(Path(app_server["cwd"]).iterdir()) == []


def test_the_run_stores_the_absolute_data_folder_the_app_reads(tiny_app_run):
    import yaml

    config = yaml.safe_load((tiny_app_run / "config.yaml").read_text())
    root = Path(config["data"]["root"])
    assert root.is_absolute() and root.parent.name == "app_data" and root.is_dir(), root
    assert all(Path(config["paths"][k]).is_absolute() for k in ("root_dir", "data_dir", "output_dir"))


def non_loopback_addresses() -> list[str]:
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]  # fmt: skip


def test_not_reachable_on_a_non_loopback_address(app_server):
    addresses = non_loopback_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    for address in addresses:
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.settimeout(5)
            s.connect((address, app_server["port"]))


def test_summary_escapes_questions():
    from PIL import Image

    turns = [
        {
            "question": "<script>alert(1)</script>",
            "shown_text": "x",
            "guard": "referred",
            "confidence_text": "",
        }
    ]
    page = session_summary(Image.new("RGB", (8, 8)), turns)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_uploads_leave_no_hash_folder_and_are_never_served(app_server, scan_png):
    """Gradio stores an upload as <temp>/<sha256 of its bytes>/<name>: after the app read it, neither the file
    nor the folder is left; and an upload no session read (a bare POST) cannot be downloaded back."""
    import httpx
    from gradio_client import Client, handle_file

    Client(app_server["url"], verbose=False, analytics_enabled=False).predict(
        handle_file(str(scan_png)), api_name="/upload"
    )
    hashed = [
        p
        for p in Path(app_server["temp_dir"]).iterdir()
        if p.is_dir() and re.fullmatch(r"[0-9a-f]{64}", p.name)
    ]
    assert hashed == []
    secret = b"\x89PNG not read by any session"
    posted = httpx.post(
        f"{app_server['url']}gradio_api/upload", files={"files": ("s.png", secret)}, timeout=30
    )
    path = posted.json()[0]
    assert Path(path).read_bytes() == secret  # it is on disk (until Gradio's cache sweep) ...
    for url in (f"{app_server['url']}gradio_api/file={path}", f"{app_server['url']}file={path}"):
        got = httpx.get(url, timeout=30)
        assert got.status_code == 404 and secret not in got.content  # ... but never served


def test_a_real_ct_is_not_answered(app_server):
    """pydicom's CT_small.dcm is unlike the run's (synthetic) training images: the upload says so, and a
    question about it gets the same text, never an answer."""
    import pydicom.data
    from gradio_client import Client, handle_file

    from medvqa.guard.novelty import NOVEL_TEXT

    client = Client(app_server["url"], verbose=False, analytics_enabled=False)
    ct = pydicom.data.get_testdata_file("CT_small.dcm")
    _, status, *_ = client.predict(handle_file(ct), api_name="/upload")
    assert status == NOVEL_TEXT
    chat, *_ = client.predict("Which organ is shown?", api_name="/ask")
    assert NOVEL_TEXT in _text(chat[-1]) and "[Referred to your doctor" in _text(chat[-1])
    assert "Answer:" not in _text(chat[-1])
