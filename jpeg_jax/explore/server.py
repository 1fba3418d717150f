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

On 127.0.0.1 (the default) it answers only requests addressed to 127.0.0.1 or localhost, so
that no other web site can reach it by DNS rebinding. The server keeps everything in memory and
writes no files; its process's temporary files (if a
library makes any) go to its own temporary folder, removed at exit.

Exit status: 0 stopped (Ctrl+C or SIGTERM); 2 bad arguments, an unusable checkpoint or a port
it cannot listen on.
"""

from __future__ import annotations

import argparse
import errno
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence

from jpeg_jax.decode_args import add_checkpoint_option, add_limit_and_debug_options
from jpeg_jax.platform import configure_xla, restart_with_huge_pages

PROG = "jpeg-jax-explore"
DEFAULT_PORT = 8765


def create_app(model, *, max_megapixels: float = 16.0, allowed_hosts: list[str] | None = None):
    """The Starlette application serving the page and its API for one model.

    Args:
      model: a ``(Generator, variables)`` pair (:func:`jpeg_jax.decode.load_model`).
      max_megapixels: larger photos are refused from their header (the decoder's message).
      allowed_hosts: answer only requests whose ``Host`` is one of these (a page of another
        site cannot reach the server by DNS rebinding); None: any.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from jpeg_jax.explore.api import ExplorerApi

    api = ExplorerApi(model, max_megapixels)
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)]
    return Starlette(
        routes=api.routes(), lifespan=api.lifespan, middleware=middleware if allowed_hosts else []
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see ``--help``)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Explore the posterior of a JPEG file in your web browser: open a JPEG, "
        "draw restorations, compare them with the JPEG, change the temperature, re-draw a "
        "region, and see the main ways the restorations of a region differ.",
    )
    add_checkpoint_option(p)
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
    add_limit_and_debug_options(p, max_megapixels=16.0)
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

    decode.allow_pillow_to_decode(args.max_megapixels)
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
        loopback = args.host in ("127.0.0.1", "localhost")
        allowed = ["127.0.0.1", "localhost"] if loopback else None
        app = create_app(model, max_megapixels=args.max_megapixels, allowed_hosts=allowed)
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
