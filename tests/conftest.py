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
configure_xla(host_device_count=8)

# configs/*.py import each other as the `configs` package, as train.py sees them.
import sys  # noqa: E402

sys.path.insert(0, str(_ROOT))
