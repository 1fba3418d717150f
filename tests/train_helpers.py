"""A tiny training config and synthetic batches shared by the training tests."""

import errno
import json
import os
import pathlib
import random
import socket
import subprocess
import sys
import time

import numpy as np
import train_config

from jpeg_jax import jpeg


def tiny_config():
    """The tiny config of ``tests/train_config.py`` (also a train.py config file)."""
    return train_config.get_config()


def synthetic_batch(batch: int = 8, size: int = 32, seed: int = 0, quality: int = 10) -> dict:
    """Smooth random images, their libjpeg-exact JPEG decode and tables."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (batch, size // 4, size // 4, 3))
    x = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(np.float32)
    x = np.round(x * 255) / 255
    qtables = np.broadcast_to(np.asarray(jpeg.quality_to_qtables(quality)), (batch, 2, 8, 8))
    y = np.asarray(jpeg.compress(x, qtables))
    return {"x": x, "y": y, "qtables": np.array(qtables, np.int32)}


# ----------------------------------------------------------------------------- subprocesses

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_CONFIG = ROOT / "tests" / "train_config.py"


def train_command(workdir, *flags) -> list[str]:
    """``python train.py --config=tests/train_config.py --workdir=WORKDIR FLAGS...``."""
    return [
        sys.executable,
        str(ROOT / "train.py"),
        f"--config={TRAIN_CONFIG}",
        f"--workdir={workdir}",
        *flags,
    ]


def subprocess_env(device_count: int | None = None, drop: tuple[str, ...] = ()) -> dict:
    """This session's environment for a subprocess with ``device_count`` simulated CPU devices
    (None: JAX's one), without the variables whose names start with ``drop``.

    The session's other XLA flags stay (tests/conftest.py: LLVM optimisation level 0), so the
    subprocess compiles as fast as the tests do and shares their compilation cache entries.
    """
    env = {k: v for k, v in os.environ.items() if not (drop and k.startswith(drop))}
    count = "--xla_force_host_platform_device_count"
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(count)]
    if device_count is not None:
        flags.append(f"{count}={device_count}")
    env["XLA_FLAGS"] = " ".join(flags)
    return env


def free_slurm_job_id(rng=None) -> int:
    """A SLURM job id whose coordinator port (JAX: ``61440 + id % 4096``) is free right now.

    Tests running at the same time (pytest-xdist workers, other sessions) pick different ones.
    """
    rng = rng or random.Random(os.getpid() * 1_000_003 + time.time_ns())
    for _ in range(200):
        job_id = rng.randrange(1, 1 << 30)
        if _port_free(65535 - 4096 + 1 + job_id % 4096):
            return job_id
    raise RuntimeError("no free coordinator port in 61440-65535")


def _port_free(port: int) -> bool:
    """Nothing listens on ``port`` (IPv4, and IPv6 where the machine has it: JAX binds [::])."""
    for family, host in ((socket.AF_INET, ""), (socket.AF_INET6, "::")):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError as e:
                if family == socket.AF_INET6 and e.errno in (
                    errno.EAFNOSUPPORT,
                    errno.EADDRNOTAVAIL,
                ):
                    continue  # no IPv6 here
                return False
    return True


class Processes:
    """Subprocesses with logs in files, all SIGKILLed on exit (a test that fails or hangs
    leaves nothing running). JAX's distributed processes ignore SIGTERM (preemption notice), so
    only SIGKILL stops them."""

    def __init__(self, log_dir):
        self.log_dir = pathlib.Path(log_dir)
        self.procs: list[subprocess.Popen] = []
        self.logs: list[pathlib.Path] = []

    def start(self, cmd, env, name: str) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log"
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def output(self, proc) -> str:
        return self.logs[self.procs.index(proc)].read_text(errors="replace")

    def tails(self, procs=None, n: int = 3000) -> str:
        """The last ``n`` characters of the logs of ``procs`` (default: all)."""
        logs = self.logs if procs is None else [self.logs[self.procs.index(p)] for p in procs]
        return "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-n:]}" for log in logs)

    def wait(self, procs, timeout: float) -> list[int]:
        """Exit codes; a process still running after ``timeout`` s fails the test (killed)."""
        deadline = time.monotonic() + timeout
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"training hung for {timeout} s\n{self.tails(procs)}"
                ) from None
        return codes

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def logged_steps(workdir) -> list[int]:
    """Steps with a line in ``WORKDIR/metrics.jsonl`` (the chief's scalars)."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def wait_for_step(workdir, step: int, processes: Processes, procs, timeout: float = 600) -> None:
    """Block until the chief has logged ``step``, every process of ``procs`` still running."""
    deadline = time.monotonic() + timeout
    while not any(s >= step for s in logged_steps(workdir)):
        if any(proc.poll() is not None for proc in procs):
            raise AssertionError(f"a training process exited early\n{processes.tails(procs)}")
        if time.monotonic() > deadline:
            processes.kill()
            raise AssertionError(
                f"step {step} not reached in {timeout} s\n{processes.tails(procs)}"
            )
        time.sleep(0.2)


def free_port() -> int:
    """A TCP port free right now (for an explicit ``coordinator_address``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]
