"""``jpeg-jax-explore``: a local web page to explore the posterior of a JPEG file.

``jpeg-jax-explore --checkpoint EXPORT [--port P] [--host H]`` serves a page (plain HTML and
JavaScript from this package's ``static/`` folder; nothing is fetched from the internet) on
127.0.0.1 by default. The page opens a JPEG, draws samples and shows them beside the JPEG's
decode; see the README's "Explore the posterior" section for what it offers.

The HTTP API the page uses (JSON unless stated; rectangles are ``[left, top, right, bottom]``
of the upright photo, as the decoder's ``--region``):

- ``POST /api/open?name=NAME`` (body: the file's bytes) -> the session's state, or status 400
  with ``{"error": "NAME: <the decoder's one-line message>"}``.
- ``POST /api/sessions/ID/draw`` ``{count, temperature, project, fresh}`` -> a job.
- ``POST /api/sessions/ID/snap`` ``{box}`` -> ``{box}`` widened to the file's 16-pixel grid.
- ``POST /api/sessions/ID/redraw`` ``{index, box, temperature}`` -> a job.
- ``POST /api/sessions/ID/components`` ``{box, count, k, temperature}`` -> a job.
- ``GET /api/jobs/JOB[?done=D]`` -> progress (``done`` of ``total``), status, error, result;
  with ``done``, answers when the job has done more than D units or ended (or after 0.5 s).
- ``GET /api/sessions/ID`` -> state (sample versions, settings, components).
- ``GET /api/sessions/ID/image?view=V&index=I&sign=S[&download=1]`` -> PNG of a view
  (``jpeg``, ``sample``, ``mean``, ``std``, ``pc``).
- ``GET /api/sessions/ID/consistency?view=V&index=I`` -> ``{in_bin, rmse}``.

The server keeps everything in memory and writes no files; its process's temporary files (if a
library makes any) go to its own temporary folder, removed at exit.

Exit status: 0 stopped (Ctrl+C or SIGTERM); 2 bad arguments, an unusable checkpoint or a port
it cannot listen on.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import resources

from jpeg_jax.platform import configure_xla, restart_with_huge_pages

PROG = "jpeg-jax-explore"
DEFAULT_PORT = 8765
MAX_UPLOAD_BYTES = 64 << 20
MAX_SESSIONS = 8


def create_app(model, *, max_megapixels: float = 16.0):
    """The Starlette application serving the page and its API for one model.

    Args:
      model: a ``(Generator, variables)`` pair (:func:`jpeg_jax.decode.load_model`).
      max_megapixels: larger photos are refused from their header (the decoder's message).
    """
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from jpeg_jax import decode, pictures
    from jpeg_jax.explore.session import Jobs, Session

    static = resources.files("jpeg_jax.explore") / "static"
    sessions: dict[str, Session] = {}
    jobs = Jobs()

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": " ".join(message.split())}, status_code=status)

    def session_of(request) -> Session:
        found = sessions.get(request.path_params["sid"])
        if found is None:
            raise LookupError("this photo is no longer open; open it again")
        return found

    def endpoint(handler):
        """Runs ``handler`` in a thread, turning expected problems into 4xx JSON errors."""

        async def wrapped(request):
            from starlette.concurrency import run_in_threadpool

            try:
                body = await request.json() if request.method == "POST" else {}
                return await run_in_threadpool(handler, request, body)
            except LookupError as e:
                return error(str(e).strip("'\""), 404)
            except (ValueError, TypeError, decode.InputError) as e:
                return error(str(e))

        return wrapped

    async def index(request):
        return FileResponse(str(static / "index.html"), headers={"Cache-Control": "no-store"})

    async def open_file(request):
        name = os.path.basename(request.query_params.get("name", "upload.jpg")) or "upload.jpg"
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_UPLOAD_BYTES:
            return error(f"{name}: file is larger than {MAX_UPLOAD_BYTES >> 20} MB")
        data = await request.body()
        try:
            from starlette.concurrency import run_in_threadpool

            image = await run_in_threadpool(decode.read_checked, data, max_megapixels)
        except Exception as e:  # the decoder's one-line message, as its CLI prints it
            return error(f"{name}: {decode.describe_error(e)}")
        found = Session(model, image, name)
        sessions[found.id] = found
        for old in list(sessions)[:-MAX_SESSIONS]:
            del sessions[old]
        return JSONResponse(found.state())

    def draw(request, body):
        found = session_of(request)
        count = int(body.get("count", 4))
        if not 1 <= count <= 64:
            raise ValueError(f"the number of samples must be between 1 and 64, got {count}")
        settings = dict(
            count=count,
            temperature=float(body.get("temperature", 1.0)),
            project=bool(body.get("project", False)),
            fresh=bool(body.get("fresh", False)),
        )
        return JSONResponse(found.start_draw(jobs, **settings).to_json())

    def snap(request, body):
        found = session_of(request)
        return JSONResponse({"box": found.upright(found.region(body["box"]))})

    def redraw(request, body):
        found = session_of(request)
        box, index = found.region(body["box"]), int(body.get("index", 0))
        temperature = float(body.get("temperature", found.temperature))
        job = jobs.submit("redraw", 1, lambda job: found.redraw(job, index, box, temperature))
        return JSONResponse(job.to_json())

    def components(request, body):
        found = session_of(request)
        box, count, k = found.region(body["box"]), int(body.get("count", 8)), int(body.get("k", 3))
        if not 2 <= count <= 64 or not 1 <= k < count:
            raise ValueError(
                f"need 2 <= samples <= 64 and 1 <= components < samples, got {count}, {k}"
            )
        temperature = float(body.get("temperature", found.temperature))
        job = jobs.submit(
            "components", 1, lambda job: found.principal_components(job, box, count, k, temperature)
        )
        return JSONResponse(job.to_json())

    def job_state(request, body):
        """With ``?done=D``: waits (up to 0.5 s) until the job has done more than D units or
        ended, so that the page learns of progress at once without polling fast."""
        job = jobs.get(request.path_params["jid"])
        if job is None:
            raise LookupError("no such job")
        known = request.query_params.get("done")
        deadline = time.monotonic() + 0.5
        while known is not None and job.status == "running" and job.done <= int(known):
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        return JSONResponse(job.to_json())

    def state(request, body):
        return JSONResponse(session_of(request).state())

    def image(request, body):
        found, query = session_of(request), request.query_params
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

    def consistency(request, body):
        found, query = session_of(request), request.query_params
        return JSONResponse(
            found.consistency(query.get("view", "sample"), int(query.get("index", 0)))
        )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        jobs.shutdown()

    routes = [
        Route("/", index),
        Route("/api/open", open_file, methods=["POST"]),
        Route("/api/jobs/{jid}", endpoint(job_state)),
        Route("/api/sessions/{sid}", endpoint(state)),
        Route("/api/sessions/{sid}/draw", endpoint(draw), methods=["POST"]),
        Route("/api/sessions/{sid}/snap", endpoint(snap), methods=["POST"]),
        Route("/api/sessions/{sid}/redraw", endpoint(redraw), methods=["POST"]),
        Route("/api/sessions/{sid}/components", endpoint(components), methods=["POST"]),
        Route("/api/sessions/{sid}/image", endpoint(image)),
        Route("/api/sessions/{sid}/consistency", endpoint(consistency)),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see ``--help``)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Explore the posterior of a JPEG file in your web browser: open a JPEG, "
        "draw restorations, compare them with the JPEG, change the temperature, re-draw a "
        "region, and see the main ways the restorations of a region differ.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="EXPORT",
        help="the trained model: a folder written by `python -m jpeg_jax.export`",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        metavar="P",
        help=f"port to listen on (default {DEFAULT_PORT}; 0 = any free port)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="H",
        help="address to listen on (default 127.0.0.1: this computer only)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=16.0,
        metavar="M",
        help="refuse photos larger than M megapixels (default 16)",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks of errors")
    return p


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number 0..65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a number 0..65535, got {value}")
    return value


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket; OSError with a message naming the problem otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise OSError(f"cannot listen on {host!r}: unknown address ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(64)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on {host} is in use; choose another with --port") from None
        raise OSError(f"cannot listen on {host} port {port} ({e.strerror or e})") from None
    return sock


def _stop(signum, frame):
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    if argv is None:  # run as a program (not called from Python): see restart_with_huge_pages
        restart_with_huge_pages()
    configure_xla()  # before JAX starts its backend
    from jpeg_jax import decode

    try:
        model = decode.load_model(args.checkpoint)
    except decode.InputError as e:
        print(f"{PROG}: error: checkpoint {decode.describe_error(e)}", file=sys.stderr)
        return 2
    try:
        sock = listen(args.host, args.port)
    except OSError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    workdir = tempfile.mkdtemp(prefix="jpeg-jax-explore-")
    tempfile.tempdir = workdir  # any temporary file a library makes goes here
    try:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"{PROG}: serving http://{shown}:{port}/ (Ctrl+C to stop)", flush=True)
        app = create_app(model, max_megapixels=args.max_megapixels)
        config = uvicorn.Config(app, log_level="debug" if args.debug else "warning")
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again: let
        # that end here (exit 0, temporary folder removed) rather than kill the process.
        signal.signal(signal.SIGTERM, _stop)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
