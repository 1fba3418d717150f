"""Process-level JAX settings that must be applied before JAX starts its backend.

Entry points, tests and benchmarks call :func:`configure_xla` before the first JAX computation.
"""

from __future__ import annotations

import os

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
