"""What every benchmark script shares: the machine and load it ran on, timing, writing results.

Import it from a script in ``benchmarks/`` as ``from benchmarks import bench_utils`` (the
scripts put the repository root on ``sys.path``).

- :func:`machine` / :func:`cpu_model`: the CPU, for the results' ``machine`` field.
- :func:`load_average`: 1, 5 and 15 minute load averages (the machine is shared: quote them).
- :func:`utc_now`: the date field, ISO 8601 UTC to the second.
- :func:`timed_rounds`: wall and CPU seconds of several cases, interleaved round by round.
- :func:`write_json`: the results file, written atomically (:mod:`jpeg_jax.fileio`).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else (platform.processor() or platform.machine() or "unknown CPU")


def machine() -> str:
    """``"<CPU model>, <N> cores visible"``."""
    return f"{cpu_model()}, {os.cpu_count()} cores visible"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return list(os.getloadavg())


def utc_now() -> str:
    """The current time, ISO 8601 UTC to the second (``2026-12-01T12:00:00+00:00``)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def timed_rounds(
    cases: dict[str, Callable[[], object]],
    *,
    rounds: int,
    repeats: int = 1,
    warmup: bool = False,
    rotate: bool = False,
) -> dict[str, dict[str, list[float]]]:
    """Wall and process-CPU seconds of every blocking ``case()`` call, interleaved by rounds.

    The machine is shared, so the cases take turns (``repeats`` calls each per round) and every
    case sees the same background load. CPU time (all threads of this process) is less
    sensitive to other processes than wall time, though spinning threads count in it.

    Args:
      cases: name -> blocking callable; one returning a Python ``float`` reports its own wall
        seconds (e.g. the time a worker process measured), used instead of the time around
        the call.
      rounds: timed rounds.
      repeats: calls per case per round.
      warmup: one untimed round first (compilation, caches).
      rotate: start each round one case later, so that no case always runs right after the
        same other one.

    Returns:
      ``{name: {"wall": [...], "cpu": [...]}}``, one entry per timed call.
    """
    names = list(cases)
    times = {name: {"wall": [], "cpu": []} for name in names}
    for r in range(rounds + int(warmup)):
        timed = r >= int(warmup)
        shift = r % len(names) if rotate else 0
        for name in names[shift:] + names[:shift]:
            for _ in range(repeats):
                wall, cpu = time.perf_counter(), time.process_time()
                reported = cases[name]()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                if timed:
                    times[name]["wall"].append(reported if type(reported) is float else wall)
                    times[name]["cpu"].append(cpu)
    return times


def write_json(path: str | os.PathLike, record, **dump_options) -> None:
    """Write ``record`` as indented JSON (``json.dumps`` options on top), atomically; says so."""
    from jpeg_jax import fileio  # late: eval_protocol.py --code imports another checkout first

    with fileio.atomic_write(path) as f:
        f.write(json.dumps(record, **{"indent": 2, **dump_options}) + "\n")
    print(f"wrote {os.fspath(path)}")
