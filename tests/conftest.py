"""Test-session setup: 8 simulated CPU devices and jpeg_jax's XLA flags, before JAX starts."""

import os
import pathlib

from jpeg_jax.platform import configure_xla

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX's persistent compilation cache, shared by the xdist workers, the train.py subprocesses the
# tests start (they inherit the environment) and the two steps of .ci/run: the tiny train step
# is compiled once, not once per launch (keys are hashes of the program, the JAX version and
# the devices, so a stale entry is never used).
_ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_ROOT / ".pytest_cache" / "jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# XLA:CPU's LLVM backend at optimisation level 0 in this process: the same HLO programs (no
# fast-math at either level; convolutions and matmuls are library kernels), compiled ~45 %
# faster (test_platform: 98 -> 55 CPU-s), which is most of a test's time at test sizes.
# Tests only (and the subprocesses that inherit this environment): benchmarks and users keep
# XLA's default level.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()
configure_xla(host_device_count=8)

# configs/*.py import each other as the `configs` package, as train.py sees them.
import sys  # noqa: E402

sys.path.insert(0, str(_ROOT))


def pytest_collection_modifyitems(items):
    """Longest first, so that on 2 workers the short tests fill the tail: the multi-process
    tests (their processes wait on each other, so sharing the cores stretches them most), then
    the others marked slow, then the rest (a stable sort keeps each group's order)."""
    items.sort(
        key=lambda item: (
            item.path.name != "test_multihost.py",
            not item.get_closest_marker("slow"),
        )
    )
