"""Process-level settings that must be applied before JAX starts its backend.

Entry points, tests and benchmarks call :func:`configure_xla` before the first JAX computation.
Programs (``train.py``, ``eval.py``, ``jpeg-jax-decode``, the benchmarks) first call
:func:`restart_with_huge_pages`.
"""

from __future__ import annotations

import os
import platform
import sys

# jax 0.10 sends XLA:CPU convolutions to YNNPACK, which runs on a single core; emptying the
# fusion type keeps them on XLA's own multi-threaded path (generator forward 1.6x faster on 2
# cores, measured with jax 0.10.2).
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def configure_xla(*, host_device_count: int | None = None) -> str:
    """Append jpeg_jax's XLA flags to ``XLA_FLAGS``, keeping every flag the user set.

    Must run before JAX initialises its backend (before the first array is created); later calls
    have no effect on a running backend.

    Args:
      host_device_count: if given and the user has not set it, simulate this many CPU devices
        (``--xla_force_host_platform_device_count``), as the multi-device tests do.

    Returns:
      The resulting ``XLA_FLAGS`` value.
    """
    flags = os.environ.get("XLA_FLAGS", "").split()
    names = {flag.split("=", 1)[0] for flag in flags}
    if _YNN_FLAG not in names:
        flags.append(f"{_YNN_FLAG}=")
    count_flag = "--xla_force_host_platform_device_count"
    if host_device_count is not None and count_flag not in names:
        flags.append(f"{count_flag}={host_device_count}")
    os.environ["XLA_FLAGS"] = " ".join(flags)
    return os.environ["XLA_FLAGS"]


def hide_accelerators_from_tensorflow() -> None:
    """Keep TensorFlow (used only by the input pipeline) off GPUs/TPUs, which belong to JAX."""
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")


# XLA:CPU takes each executable's scratch memory ("temp" buffer: 3.1 GB for the paper-size
# generator's forward+backward at batch 4, 128^2) from malloc on every call. glibc serves
# blocks that large with a fresh mmap and returns them with munmap, so every call faults the
# whole block back in, 4 KiB page by 4 KiB page (760,000 faults, ~1.2 s of kernel time per call
# on 2 cores). With this tunable glibc asks for transparent huge pages on its large mappings
# (madvise), so the same memory comes back in 2 MiB pages: 3,000-35,000 faults, forward+backward
# 1.42 -> 1.27 s/img, forward batch 8 ~7 % faster, batch 1 and the tf.data-fed demo unchanged,
# one program at a time (benchmarks/RESULTS.md; a models.py run with four worker processes
# taking turns did not show the forward gain). Keeping the freed memory instead (one malloc
# arena, no mmap, no trimming) removed every fault but made user time grow as much and slowed
# tf.data-fed training by ~20 %.
MALLOC_TUNABLES = {"glibc.malloc.hugetlb": "1"}
# 1: restart with the tunables; 0: never; unset: the program's default (on).
HUGE_PAGES_ENV = "JPEG_JAX_HUGE_PAGES"


def huge_pages_environment(
    environ: dict[str, str], *, default: bool = True
) -> dict[str, str] | None:
    """The environment a program should restart with so that glibc maps large blocks with
    transparent huge pages.

    Returns ``None`` when nothing needs to change: ``JPEG_JAX_HUGE_PAGES`` is ``0`` (or unset and
    ``default`` is false), or the tunables are already set (every one the user set is kept as
    they set it, ``glibc.malloc.hugetlb`` included).
    """
    wanted = environ.get(HUGE_PAGES_ENV, "")
    if wanted not in ("", "0", "1"):
        raise ValueError(f"{HUGE_PAGES_ENV}={wanted!r}: expected 0 or 1")
    if wanted == "0" or (wanted == "" and not default):
        return None
    current = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]
    names = {t.split("=", 1)[0] for t in current}
    missing = [f"{k}={v}" for k, v in MALLOC_TUNABLES.items() if k not in names]
    if not missing:
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(current + missing)}


def restart_with_huge_pages(*, default: bool = True) -> None:
    """Re-executes the running program once with :data:`MALLOC_TUNABLES` in ``GLIBC_TUNABLES``.

    glibc reads its tunables only when a process starts, hence the restart: same interpreter,
    same arguments (``sys.orig_argv``), same process id, open files and terminal; it costs one
    interpreter start-up (~0.1 s). Call it early in a program's ``__main__`` path (whatever ran
    before it runs twice), never from library code or tests.

    Args:
      default: whether to restart when ``JPEG_JAX_HUGE_PAGES`` is unset (``1`` forces the
        restart, ``0`` prevents it). Does nothing where it cannot help (not Linux with glibc,
        e.g. macOS or musl; glibc before 2.35 and kernels with transparent huge pages
        ``never`` ignore the tunable harmlessly, as does an allocator replaced via
        ``LD_PRELOAD``) or when the tunables are already set, so it restarts at most once.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or not sys.executable:
        return
    try:
        env = huge_pages_environment(dict(os.environ), default=default)
    except ValueError as e:
        print(f"warning: {e}; keeping glibc's malloc defaults", file=sys.stderr)
        return
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:  # e.g. an interpreter that cannot be re-executed: run with glibc's defaults
        return
