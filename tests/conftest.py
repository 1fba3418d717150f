"""Test-session setup: 8 simulated CPU devices and jpeg_jax's XLA flags, before JAX starts."""

import os
import pathlib
import subprocess
import sys

from jpeg_jax.platform import configure_xla

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX's persistent compilation cache, shared by the xdist workers and the train.py subprocesses
# the tests start (they inherit the environment): a program is compiled once, not once per
# launch (keys are hashes of the program, the JAX version and the devices, so a stale entry is
# never used). JAX writes entries from process 0 only, and on CPU the other processes of a
# multi-process job have keys of their own, so those recompile at every launch.
_ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_ROOT / ".pytest_cache" / "jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


def _xla_accepts(flag: str) -> bool:
    """Whether this jaxlib's XLA knows ``flag`` (XLA stops a process on an unknown flag)."""
    env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
    probe = [sys.executable, "-c", "import jax; jax.devices()"]
    try:
        return subprocess.run(probe, env=env, capture_output=True, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# Compile-time flags for XLA:CPU, tests only (and the subprocesses that inherit this
# environment; benchmarks and users keep XLA's defaults). Both leave the HLO programs as they
# are (no fast-math either way; convolutions and matmuls are library kernels) and change only
# how XLA:CPU turns them into machine code, which is most of a test's time at test sizes:
# - LLVM at optimisation level 0: ~45 % faster compiles (test_platform: 98 -> 55 CPU-s);
# - fusions through XLA:CPU's LLVM IR emitter instead of its MLIR fusion emitters: the tiny
#   train step compiles in 11.4 s instead of 13.0, the suite's compiles take 932 CPU-s instead
#   of 1418 (benchmarks/RESULTS.md, "Test suite"). Probed first, once (the xdist workers
#   inherit the result): a jaxlib that has dropped the older emitter keeps the default.
_FUSION_EMITTERS = "--xla_cpu_use_fusion_emitters"
_flags = os.environ.get("XLA_FLAGS", "").split()
_names = {flag.split("=", 1)[0] for flag in _flags}
if "--xla_backend_optimization_level" not in _names:
    _flags.append("--xla_backend_optimization_level=0")
if _FUSION_EMITTERS not in _names and _xla_accepts(f"{_FUSION_EMITTERS}=false"):
    _flags.append(f"{_FUSION_EMITTERS}=false")
os.environ["XLA_FLAGS"] = " ".join(_flags)
configure_xla(host_device_count=8)

# configs/*.py import each other as the `configs` package, as train.py sees them.
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
