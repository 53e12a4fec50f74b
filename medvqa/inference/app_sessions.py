"""What the app (medvqa/app.py) keeps and leaves on the server, bounded: sessions, uploads, downloads.

- Sessions: Gradio keeps every session's state in its StateHolder, at most `launch(state_session_capacity)`
  of them, dropping the least recently used first: the app passes `app.max_sessions`. `SessionLog`
  remembers (by Gradio's random session hash only, no data) which sessions once held an image, so one
  whose state was dropped is told so instead of being asked for a first upload.
- Uploads: Gradio writes each upload to `<GRADIO_TEMP_DIR>/<sha256 of its bytes>/<name>`. The app deletes
  the file once read, and the folder too: a folder named by the hash of an image tells anyone who can
  list the folder that this image was uploaded (`remove_upload`).
- Downloads: Gradio serves any file of its upload folder at `/gradio_api/file=<path>` to whoever knows
  the path, also an upload no session ever read (a POST to /gradio_api/upload alone), until the cache
  sweep. The app serves nothing from there (images and the summary are data: URIs), so
  `NoUploadDownloads` answers 404 for that folder. Gradio's own `blocked_paths` cannot do this: it also
  refuses the app's own event inputs from that folder, so no upload would reach the app.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote

DROPPED = (
    "Your earlier image and questions were cleared: the app keeps only a limited number of sessions, and "
    "forgets one that has been idle for a while. Please upload your image again."
)


def upload_folder() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def remove_upload(path: str | Path) -> None:
    """Delete an upload's file and, when it is inside Gradio's upload folder and now empty, its folder."""
    file = Path(path)
    file.unlink(missing_ok=True)
    parent = file.resolve().parent
    if parent != upload_folder() and inside(parent, upload_folder()):
        # not empty (another upload of the same bytes, in flight) or already gone: leave it
        with contextlib.suppress(OSError):
            parent.rmdir()


class NoUploadDownloads:
    """ASGI middleware: 404 for any `.../file=<path>` request whose path lies in Gradio's upload folder."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and "/file=" in scope["path"]:
            target = Path(unquote(scope["path"].split("/file=", 1)[1]))
            if inside(target.resolve(), upload_folder()):
                from starlette.responses import PlainTextResponse

                return await PlainTextResponse("Not found", status_code=404)(scope, receive, send)
        return await self.app(scope, receive, send)


class SessionLog:
    """Gradio session hashes that once held an image, the newest `keep` of them (hashes only: no image,
    no question). `was_dropped(hash, state)`: that session held an image and its state no longer does."""

    def __init__(self, keep: int = 10_000):
        self.keep, self._seen, self._lock = keep, OrderedDict(), threading.Lock()

    def held_image(self, session: str | None) -> None:
        if not session:
            return
        with self._lock:
            self._seen[session] = True
            self._seen.move_to_end(session)
            while len(self._seen) > self.keep:
                self._seen.popitem(last=False)

    def was_dropped(self, session: str | None, state: dict | None) -> bool:
        return bool(session) and session in self._seen and (not state or state.get("image") is None)
