"""The explorer's HTTP API (Starlette): the page, its static files and the JSON endpoints.

See :mod:`jpeg_jax.explore.server` for the list of endpoints. Handlers that touch the model or
NumPy run in Starlette's thread pool; model work itself is queued as :class:`Jobs`.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from importlib import resources

from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jpeg_jax import decode, pictures
from jpeg_jax.explore.session import Jobs, Session

MAX_UPLOAD_BYTES = 64 << 20
MAX_SESSIONS = 8
STATIC = resources.files("jpeg_jax.explore") / "static"


def error(message: str, status: int = 400) -> JSONResponse:
    """``{"error": message}`` on one line."""
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


def endpoint(handler):
    """Runs ``handler(request, body)`` in a thread; expected problems become 4xx JSON errors."""

    async def wrapped(request):
        try:
            body = await request.json() if request.method == "POST" else {}
            return await run_in_threadpool(handler, request, body)
        except LookupError as e:
            return error(str(e).strip("'\""), 404)
        except (ValueError, TypeError, decode.InputError) as e:
            return error(str(e))

    return wrapped


class ExplorerApi:
    """The sessions and jobs of one server, and a handler per endpoint."""

    def __init__(self, model, max_megapixels: float) -> None:
        self.model, self.max_megapixels = model, max_megapixels
        self.sessions: dict[str, Session] = {}
        self.jobs = Jobs()

    def routes(self) -> list:
        e = endpoint
        return [
            Route("/", self.index),
            Route("/api/open", self.open_file, methods=["POST"]),
            Route("/api/jobs/{jid}", e(self.job_state)),
            Route("/api/sessions/{sid}", e(self.state)),
            Route("/api/sessions/{sid}/draw", e(self.draw), methods=["POST"]),
            Route("/api/sessions/{sid}/snap", e(self.snap), methods=["POST"]),
            Route("/api/sessions/{sid}/redraw", e(self.redraw), methods=["POST"]),
            Route("/api/sessions/{sid}/components", e(self.components), methods=["POST"]),
            Route("/api/sessions/{sid}/image", e(self.image)),
            Route("/api/sessions/{sid}/consistency", e(self.consistency)),
            Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        yield
        self.jobs.shutdown()

    def session_of(self, request) -> Session:
        found = self.sessions.get(request.path_params["sid"])
        if found is None:
            raise LookupError("this photo is no longer open; open it again")
        return found

    async def index(self, request):
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-store"})

    async def open_file(self, request):
        name = os.path.basename(request.query_params.get("name", "upload.jpg")) or "upload.jpg"
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_UPLOAD_BYTES:
            return error(f"{name}: file is larger than {MAX_UPLOAD_BYTES >> 20} MB")
        data = await request.body()
        try:
            image = await run_in_threadpool(decode.read_checked, data, self.max_megapixels)
        except Exception as e:  # the decoder's one-line message, as its CLI prints it
            return error(f"{name}: {decode.describe_error(e)}")
        found = Session(self.model, image, name)
        self.sessions[found.id] = found
        for old in list(self.sessions)[:-MAX_SESSIONS]:
            del self.sessions[old]
        return JSONResponse(found.state())

    def draw(self, request, body):
        found = self.session_of(request)
        count = int(body.get("count", 4))
        if not 1 <= count <= 64:
            raise ValueError(f"the number of samples must be between 1 and 64, got {count}")
        settings = dict(
            count=count,
            temperature=float(body.get("temperature", 1.0)),
            project=bool(body.get("project", False)),
            fresh=bool(body.get("fresh", False)),
        )
        return JSONResponse(found.start_draw(self.jobs, **settings).to_json())

    def snap(self, request, body):
        found = self.session_of(request)
        return JSONResponse({"box": found.upright(found.region(body["box"]))})

    def redraw(self, request, body):
        found = self.session_of(request)
        box, index = found.region(body["box"]), int(body.get("index", 0))
        temperature = float(body.get("temperature", found.temperature))
        job = self.jobs.submit("redraw", 1, lambda job: found.redraw(job, index, box, temperature))
        return JSONResponse(job.to_json())

    def components(self, request, body):
        found = self.session_of(request)
        box, count, k = found.region(body["box"]), int(body.get("count", 8)), int(body.get("k", 3))
        if not 2 <= count <= 64 or not 1 <= k < count:
            raise ValueError(
                f"need 2 <= samples <= 64 and 1 <= components < samples, got {count}, {k}"
            )
        temperature = float(body.get("temperature", found.temperature))
        job = self.jobs.submit(
            "components", 1, lambda job: found.principal_components(job, box, count, k, temperature)
        )
        return JSONResponse(job.to_json())

    def job_state(self, request, body):
        """With ``?done=D``: waits (up to 0.5 s) until the job has done more than D units or
        ended, so that the page learns of progress at once without polling fast."""
        job = self.jobs.get(request.path_params["jid"])
        if job is None:
            raise LookupError("no such job")
        known = request.query_params.get("done")
        deadline = time.monotonic() + 0.5
        while known is not None and job.status == "running" and job.done <= int(known):
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        return JSONResponse(job.to_json())

    def state(self, request, body):
        return JSONResponse(self.session_of(request).state())

    def image(self, request, body):
        found, query = self.session_of(request), request.query_params
        view, index, sign = (
            query.get("view", "sample"),
            int(query.get("index", 0)),
            int(query.get("sign", 0)),
        )
        data = pictures.encode_picture(
            found.picture(view, index, sign), "png", found.image.icc_profile
        )
        headers = {"Cache-Control": "no-store"}
        if query.get("download"):
            stem = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.splitext(found.name)[0])
            part = {-1: "minus", 0: "mean", 1: "plus", 2: "direction"}.get(sign, "")
            label = {"sample": f"sample{index + 1}", "pc": f"pc{index + 1}_{part}"}
            headers["Content-Disposition"] = (
                f'attachment; filename="{stem}_{label.get(view, view)}.png"'
            )
        return Response(data, media_type="image/png", headers=headers)

    def consistency(self, request, body):
        found, query = self.session_of(request), request.query_params
        return JSONResponse(
            found.consistency(query.get("view", "sample"), int(query.get("index", 0)))
        )
