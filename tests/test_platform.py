import json
import os
import platform as pyplatform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import random_params
from train_helpers import synthetic_batch, tiny_config

from configs import ffhq
from jpeg_jax import platform, sampling, train_state, train_step
from jpeg_jax.models import Critic, Generator, convert


def test_configure_xla_keeps_user_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=3 --foo=1")
    flags = platform.configure_xla(host_device_count=8)
    assert "--xla_force_host_platform_device_count=3" in flags and "--foo=1" in flags
    assert "--xla_force_host_platform_device_count=8" not in flags
    assert "--xla_cpu_experimental_ynn_fusion_type=" in flags.split()
    assert os.environ["XLA_FLAGS"] == flags


def test_configure_xla_respects_user_ynn_setting(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=conv")
    flags = platform.configure_xla()
    assert flags == "--xla_cpu_experimental_ynn_fusion_type=conv"


def test_tests_run_with_flags():
    assert len(jax.devices()) == 8


_TUNABLES = (  # jpeg_jax's malloc tunables, as GLIBC_TUNABLES spells them
    "glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776"
)


def test_huge_pages_environment_merges_and_respects_user():
    env = platform.huge_pages_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"})
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=4:" + _TUNABLES
    assert platform.huge_pages_environment(env) is None  # complete: no second restart
    mine = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}  # the user's value wins, the rest added
    rest = _TUNABLES.split(":", 1)[1]
    assert (
        platform.huge_pages_environment(mine)["GLIBC_TUNABLES"]
        == f"{mine['GLIBC_TUNABLES']}:{rest}"
    )
    every = "glibc.malloc.trim_threshold=0:glibc.malloc.mmap_max=9:x.y=1:glibc.malloc.hugetlb=0"
    assert platform.huge_pages_environment({"GLIBC_TUNABLES": every}) is None  # all the user's
    off, on = {platform.HUGE_PAGES_ENV: "0"}, {platform.HUGE_PAGES_ENV: "1"}
    assert platform.huge_pages_environment(off) is None
    assert platform.huge_pages_environment({}, default=False) is None
    assert platform.huge_pages_environment(on, default=False) is not None
    with pytest.raises(ValueError, match="JPEG_JAX_HUGE_PAGES='yes'"):
        platform.huge_pages_environment({platform.HUGE_PAGES_ENV: "yes"})


# Restarts via the function under test, then mallocs, touches and frees a 256 MB block twice in
# the main thread and twice in a worker thread, counting page faults per touch. With glibc's
# defaults the block is mmapped and munmapped each time: every 4 KiB page faults, every time
# (65,536). With the tunables the block comes in 2 MiB pages (~128 faults), and the main
# thread's second touch reuses the kept block (glibc still maps a thread's blocks over 64 MiB
# afresh: benchmarks/RESULTS.md, "freed memory kept").
_CHILD = """
import ctypes, json, os, resource, sys, threading
from jpeg_jax import platform
platform.restart_with_huge_pages(default=os.environ["CHILD_DEFAULT"] == "1")
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
n, faults = 256 << 20, []
def touch():
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
def twice():
    touch()
    touch()
twice()
t = threading.Thread(target=twice)
t.start()
t.join()
print(json.dumps([faults, os.getpid(), sys.argv[1:], os.environ.get("GLIBC_TUNABLES", "")]))
"""


def _transparent_huge_pages() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "unavailable"


@pytest.mark.skipif(
    sys.platform != "linux"
    or pyplatform.libc_ver()[0] != "glibc"
    or tuple(map(int, pyplatform.libc_ver()[1].split(".")[:2])) < (2, 35),
    reason="the glibc.malloc.hugetlb tunable needs glibc 2.35+",
)
@pytest.mark.skipif(
    _transparent_huge_pages() not in ("madvise", "always"),
    reason=f"transparent huge pages: {_transparent_huge_pages()}",
)
def test_restart_with_huge_pages_faults_large_blocks_in_huge_pages(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "CHILD_DEFAULT")}
    base.pop(platform.HUGE_PAGES_ENV, None)
    results = {}
    for name, extra in {
        "default_on": {"CHILD_DEFAULT": "1"},
        "default_off": {"CHILD_DEFAULT": "0"},
        "forced_off": {"CHILD_DEFAULT": "1", platform.HUGE_PAGES_ENV: "0"},
        "forced_on": {"CHILD_DEFAULT": "0", platform.HUGE_PAGES_ENV: "1"},
    }.items():
        proc = subprocess.Popen(
            [sys.executable, "-u", str(script), "a b", "--x=1"],
            env={**base, **extra},
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        faults, pid, argv, tunables = json.loads(out)
        assert pid == proc.pid and argv == ["a b", "--x=1"]  # the same process, same arguments
        results[name] = faults, tunables
    for name in ("default_off", "forced_off"):  # glibc's defaults: every page faults, each time
        faults, tunables = results[name]
        assert min(faults) > 60_000 and tunables == "", results
    for name in ("default_on", "forced_on"):  # huge pages; the main thread's block is kept
        (main_1, main_2, thread_1, thread_2), tunables = results[name]
        assert max(main_1, thread_1, thread_2) < 8_000 and main_2 < 100, results
        assert tunables == _TUNABLES, results


# --------------------------------------------------------------------------- resolve_generator


def test_resolve_generator_chooses_per_backend_and_keeps_explicit_values():
    auto = {"num_grow_ch": 32, "conv_impl": "auto", "split_convs": None, "scan": False}
    cpu = platform.resolve_generator(auto, backend="cpu")
    assert (cpu["conv_impl"], cpu["split_convs"], cpu["scan"]) == ("eigen", True, False)
    for backend in ("gpu", "tpu", "cuda", "rocm"):
        out = platform.resolve_generator(auto, backend=backend)
        assert (out["conv_impl"], out["split_convs"]) == ("xla", False), backend
    narrow = platform.resolve_generator({**auto, "num_grow_ch": 16}, backend="cpu")
    assert narrow["split_convs"] is False
    assert platform.resolve_generator({}, backend="cpu")["conv_impl"] == "eigen"  # absent = auto
    explicit = {**auto, "conv_impl": "xla", "split_convs": True}
    assert platform.resolve_generator(explicit, backend="cpu") == {**explicit}
    assert platform.resolve_generator(explicit, backend="gpu") == {**explicit}
    assert auto["conv_impl"] == "auto"  # the input is not modified
    assert platform.resolve_generator(auto) == platform.resolve_generator(
        auto, backend=jax.default_backend()
    )


def test_resolve_generator_for_inference_rechooses_the_exported_choices():
    exported = {"num_grow_ch": 32, "conv_impl": "eigen", "split_convs": True, "remat": True}
    gpu = platform.resolve_generator({**exported, "scan": False}, backend="gpu", inference=True)
    assert (gpu["conv_impl"], gpu["split_convs"], gpu["remat"], gpu["scan"]) == (
        "xla",
        False,
        False,
        False,
    )
    scanned = platform.resolve_generator({**exported, "scan": True}, backend="gpu", inference=True)
    assert scanned["scan"] is True  # kept elsewhere
    cpu = platform.resolve_generator({**exported, "scan": False}, backend="cpu", inference=True)
    assert (cpu["conv_impl"], cpu["split_convs"], cpu["remat"], cpu["scan"]) == (
        "eigen",
        True,
        False,
        True,
    )


def test_default_config_on_an_accelerator_is_the_generators_default_variant():
    """A GPU/TPU user of configs/ffhq.py gets the module's defaults: the variant the tests
    below run on CPU."""
    options = platform.resolve_generator(ffhq.get_config().model.generator.to_dict(), backend="gpu")
    for key in platform.PLATFORM_KEYS:
        assert options[key] == getattr(Generator(), key), key


# ------------------------------------------- the accelerator variant, run on CPU at small size

TINY = dict(num_feat=8, num_block=3, num_grow_ch=4, noise=True, film=True, film_dim=16)


def _variants(monkeypatch, **options):
    """(accelerator, CPU) Generator options; the CPU one splits even at this width, so that it
    has every CPU kernel (eigen convolutions, split dense convs)."""
    monkeypatch.setattr(platform, "SPLIT_MIN_GROWTH", 1)
    auto = {**TINY, "conv_impl": "auto", "split_convs": None, **options}
    accel = platform.resolve_generator(auto, backend="gpu")
    cpu = platform.resolve_generator(auto, backend="cpu")
    assert (accel["conv_impl"], accel["split_convs"]) == ("xla", False)
    assert (cpu["conv_impl"], cpu["split_convs"]) == ("eigen", True)
    return accel, cpu


def _max_rel_diff(a, b) -> float:
    """``max |a - b| / max |b|`` over all leaves of two trees: the error relative to the largest
    entry (single scalars such as a noise scale's gradient are sums with cancellation, whose
    own relative rounding error is no measure of the whole)."""
    diff = max(
        float(np.abs(u - v).max()) for u, v in zip(*map(jax.tree.leaves, (a, b)), strict=True)
    )
    return diff / max(float(np.abs(v).max()) for v in jax.tree.leaves(b))


@pytest.mark.parametrize("stacking", [{}, {"scan": True, "remat": True}, {"remat": True}])
def test_accelerator_variant_equals_cpu_variant(monkeypatch, stacking):
    """Forward and gradients of the variant GPUs/TPUs run (XLA's convolution gradients,
    concatenated dense convs) against the CPU kernels, unrolled and scanned + remat."""
    accel, cpu = _variants(monkeypatch, **stacking)
    params = random_params(Generator(**accel), scale=0.2, seed=1)  # same layout for both
    y = jax.random.uniform(jax.random.key(0), (2, 32, 48, 3))
    q = jnp.full((2, 2, 8, 8), 7, jnp.int32)

    def run(options):
        gen = Generator(**options)

        def loss(p):
            out = gen.apply({"params": p}, y, q, rngs={"noise": jax.random.key(3)})
            return jnp.mean((out - y) ** 2), out

        return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

    (loss_a, out_a), grads_a = run(accel)
    (loss_c, out_c), grads_c = run(cpu)
    assert _max_rel_diff(out_a, out_c) < 1e-5
    assert abs(float(loss_a) - float(loss_c)) < 1e-5 * abs(float(loss_c))
    assert _max_rel_diff(grads_a, grads_c) < 1e-5


def test_accelerator_variant_trains_like_the_cpu_variant(monkeypatch):
    """Three GAN steps (critic + R1, generator with consistency and FM, EMA) of the tiny
    training config with each variant, from the same state and batches."""
    results = []
    for options in _variants(monkeypatch):
        config = tiny_config()
        config.model.generator.update(
            {k: v for k, v in options.items() if k in platform.PLATFORM_KEYS}
        )
        models = train_state.make_models(config)
        assert models[0].conv_impl == options["conv_impl"]  # explicit values are kept
        optimizers = train_state.make_optimizers(config)
        state = train_state.init_state(config, models, optimizers, jax.random.key(0))
        step = jax.jit(train_step.make_train_step(config, models, optimizers), static_argnums=3)
        for i in range(3):
            batch = {k: jnp.asarray(v) for k, v in synthetic_batch(seed=i).items()}
            state, metrics = step(state, batch, jax.random.key(1), True)
        assert float(metrics["skipped"]) == 0
        results.append((jax.device_get(state), jax.device_get(metrics)))
    (accel, m_accel), (cpu, m_cpu) = results
    for name in ("g_params", "d_params", "ema_params"):
        assert _max_rel_diff(getattr(accel, name), getattr(cpu, name)) < 1e-5, name
    for k in m_cpu:
        assert abs(m_accel[k] - m_cpu[k]) <= 1e-5 * abs(m_cpu[k]) + 1e-7, k


def test_model_and_sampling_code_never_ask_for_the_backend(monkeypatch):
    """Every implementation choice is an attribute: tracing any variant (and resolving a
    module for sampling) must not call ``jax.default_backend``."""

    def asked():
        raise AssertionError("model code asked for the backend")

    monkeypatch.setattr(jax, "default_backend", asked)
    y = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    q = jnp.ones((2, 2, 8, 8), jnp.int32)
    rngs = {"params": jax.random.key(0), "noise": jax.random.key(1)}
    for options in (
        {},
        {"scan": True, "remat": True},
        {"remat": True, "conv_impl": "eigen", "split_convs": True},
    ):
        gen = Generator(**TINY, **options)
        params = jax.eval_shape(lambda y, g=gen: g.init(rngs, y, q), y)["params"]
        loss = lambda p, y, g=gen: jnp.mean(g.apply({"params": p}, y, q, rngs=rngs) ** 2)
        jax.eval_shape(jax.grad(loss), params, y)
        unrolled = convert.unstack_blocks(
            jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), params)
        )
        model, variables = sampling.resolve_model((gen, unrolled))
        assert model is gen and convert.is_stacked(variables["params"]) == gen.scan
    critic = Critic(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1), dtype=jnp.bfloat16)
    jax.eval_shape(lambda y: critic.init(jax.random.key(0), y, y), y)
