"""Platform choices, made once at start-up: XLA flags, malloc tunables, generator variants.

Entry points, tests and benchmarks call :func:`configure_xla` before the first JAX computation.
Programs (``train.py``, ``eval.py``, ``jpeg-jax-decode``, the benchmarks) first call
:func:`restart_with_huge_pages`. Every backend-dependent model choice is made by
:func:`resolve_generator` (training: ``train_state.generator_kwargs``; sampling:
``sampling.resolve_model``); model and sampling code never ask for the backend.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from typing import Any

# jax 0.10 sends XLA:CPU convolutions to YNNPACK, which runs on a single core; emptying the
# fusion type keeps them on XLA's own multi-threaded path (benchmarks/RESULTS.md, "Models").
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


# XLA:CPU mallocs each executable's scratch buffer (GBs at paper size) on every call. By default
# glibc maps such a block afresh and unmaps it after the call, so every call faults it in
# again; on a VM that reports freed pages to its host (virtio-balloon free page reporting) a
# fault can also wait for the host to supply the page. The tunables: huge pages (madvise) for
# glibc's memory, no per-block mmap and no trimming, i.e. freed blocks stay in the process (its
# resident memory stays at its peak) for the next call, except a worker thread's blocks over
# 64 MiB, which glibc maps afresh whatever the tunables, XLA's scratch buffer among them (it
# comes in huge pages). Measurements and the alternatives tried: benchmarks/RESULTS.md ("Huge
# pages", "XLA:CPU scratch memory and glibc", "freed memory kept").
MALLOC_TUNABLES = {
    "glibc.malloc.hugetlb": "1",
    "glibc.malloc.mmap_max": "0",
    "glibc.malloc.trim_threshold": str(1 << 40),
}
# 1: restart with the tunables; 0: never; unset: the program's default (on).
HUGE_PAGES_ENV = "JPEG_JAX_HUGE_PAGES"


def huge_pages_environment(
    environ: dict[str, str], *, default: bool = True
) -> dict[str, str] | None:
    """The environment a program should restart with so that glibc backs memory with
    transparent huge pages and keeps freed blocks for reuse (:data:`MALLOC_TUNABLES`).

    Returns ``None`` when nothing needs to change: ``JPEG_JAX_HUGE_PAGES`` is ``0`` (or unset and
    ``default`` is false), or every tunable is already set. Each tunable the user set is kept as
    they set it; only the missing ones are added.
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
        e.g. macOS or musl; glibc before 2.35 ignores the huge-page tunable and kernels with
        transparent huge pages ``never`` ignore it harmlessly, an allocator replaced via
        ``LD_PRELOAD`` ignores them all) or when the tunables are already set, so it restarts
        at most once. The process keeps the memory it frees (its resident size stays at its
        peak): set ``GLIBC_TUNABLES`` yourself, or ``JPEG_JAX_HUGE_PAGES=0``, where that matters.
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


# Generator attributes that choose an implementation, not the function computed.
PLATFORM_KEYS = ("conv_impl", "split_convs", "scan", "remat")
AUTO = "auto"
# The narrowest growth width at which split dense convolutions are used on CPU.
SPLIT_MIN_GROWTH = 32


def resolve_generator(
    options: Mapping[str, Any], *, backend: str | None = None, inference: bool = False
) -> dict[str, Any]:
    """Concrete ``Generator`` attributes for a backend: the one place that decides the platform.

    Rules (measurements behind them: benchmarks/RESULTS.md, "Models"):
    - ``conv_impl`` ``"auto"`` (or absent): ``"eigen"`` on CPU (custom-VJP convolutions in the
      layout XLA:CPU's Eigen kernels need), ``"xla"`` on GPU/TPU (XLA's own gradients).
    - ``split_convs`` ``None``/``"auto"``: on CPU for growth width >= :data:`SPLIT_MIN_GROWTH`,
      where it trained fastest; otherwise concatenate (GPU/TPU: one larger convolution).
    - ``inference=True`` (sampling an export): every key of :data:`PLATFORM_KEYS` is chosen
      afresh, since an export's were chosen for the machine that trained it; ``remat`` off (no
      backward), ``scan`` on CPU (forward as fast, compiles far sooner), as exported elsewhere.
    Other keys are returned unchanged; explicit values are kept (except with ``inference``).

    Args:
      options: ``Generator`` attributes, e.g. ``config.model.generator`` as a dict or an
        export's ``generator`` dict.
      backend: ``"cpu"``, ``"gpu"``, ``"tpu"``, ...; default ``jax.default_backend()`` (this
        initialises JAX: call :func:`configure_xla` first).
      inference: choose for sampling rather than training.

    Returns:
      A new dict with concrete ``conv_impl`` and ``split_convs`` (and ``scan``, ``remat`` with
      ``inference``).
    """
    if backend is None:
        import jax

        backend = jax.default_backend()
    cpu = backend == "cpu"
    out = dict(options)
    if inference:
        out.update(conv_impl=AUTO, split_convs=None, remat=False)
        if cpu:
            out["scan"] = True
    if out.get("conv_impl", AUTO) == AUTO:
        out["conv_impl"] = "eigen" if cpu else "xla"
    if out.get("split_convs") in (None, AUTO):
        out["split_convs"] = cpu and int(out.get("num_grow_ch", 32)) >= SPLIT_MIN_GROWTH
    return out
