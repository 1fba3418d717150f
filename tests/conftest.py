"""Test-session setup: 8 simulated CPU devices and jpeg_jax's XLA flags, before JAX starts."""

import os

from jpeg_jax.platform import configure_xla

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
configure_xla(host_device_count=8)

# configs/*.py import each other as the `configs` package, as train.py sees them.
import sys  # noqa: E402

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
