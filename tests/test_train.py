"""The train step: sharding invariance, multi-process equivalence, NaN skipping, resume."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_helpers import synthetic_batch, tiny_config

from jpeg_jax import checkpoint, export, train_lib, train_state, train_step

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run_step(config, devices, batch, seed=0):
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    mesh = train_step.make_mesh(devices)
    state = train_step.replicate(
        mesh, train_state.init_state(config, models, optimizers, jax.random.key(seed))
    )
    step = train_step.compile_step(
        train_step.make_train_step(config, models, optimizers), mesh, state
    )
    state, metrics = step(state, train_step.global_batch(mesh, batch), jax.random.key(1), True)
    return jax.device_get(state), jax.device_get(metrics)


def _max_rel_diff(a, b):
    diffs = jax.tree.map(lambda u, v: float(np.abs(u - v).max() / (np.abs(v).max() + 1e-12)), a, b)
    return max(jax.tree.leaves(diffs))


def test_step_on_8_devices_equals_1_device():
    config = tiny_config()
    batch = synthetic_batch()
    s8, m8 = _run_step(config, jax.devices()[:8], batch)
    s1, m1 = _run_step(config, jax.devices()[:1], batch)
    assert int(s8.step) == 1 and float(m8["skipped"]) == 0
    # Same math, different reduction order across devices: float32 round-off only.
    assert _max_rel_diff(s8.g_params, s1.g_params) < 1e-4
    assert _max_rel_diff(s8.d_params, s1.d_params) < 1e-4
    for k in m1:
        np.testing.assert_allclose(m8[k], m1[k], rtol=1e-4, atol=1e-6)


def test_non_finite_batch_is_skipped():
    config = tiny_config()
    batch = synthetic_batch()
    batch["x"][0, 0, 0, 0] = np.nan
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    state = train_state.init_state(config, models, optimizers, jax.random.key(0))
    before = jax.device_get(state)
    step = jax.jit(train_step.make_train_step(config, models, optimizers))
    after, metrics = step(state, {k: jnp.asarray(v) for k, v in batch.items()}, jax.random.key(1))
    assert float(metrics["skipped"]) == 1 and int(after.skips) == 1 and int(after.step) == 1
    for a, b in ((after.g_params, before.g_params), (after.ema_params, before.ema_params)):
        jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), b)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(after.d_params), before.d_params)


_WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r}); sys.path.insert(0, {root!r})
    from jpeg_jax.platform import configure_xla
    configure_xla(host_device_count=2)
    import jax, numpy as np
    pid = int(sys.argv[1])
    jax.distributed.initialize("localhost:{port}", num_processes=2, process_id=pid)
    from train_helpers import synthetic_batch, tiny_config
    from jpeg_jax import train_state, train_step
    config = tiny_config()
    batch = synthetic_batch()
    local = {{k: v[4 * pid : 4 * pid + 4] for k, v in batch.items()}}
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    mesh = train_step.make_mesh()
    state = train_state.init_state(config, models, optimizers, jax.random.key(0))
    state = train_step.replicate(mesh, state)
    step_fn = train_step.make_train_step(config, models, optimizers)
    step = train_step.compile_step(step_fn, mesh, state)
    state, metrics = step(state, train_step.global_batch(mesh, local), jax.random.key(1), True)
    local_params = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), state.g_params)
    params = jax.tree.leaves(local_params)
    if pid == 0:
        np.savez(sys.argv[2], *params)
    """
)


def test_two_processes_equal_one_process(tmp_path):
    port = 20000 + os.getpid() % 20000
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(tests=str(ROOT / "tests"), root=str(ROOT), port=port))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = tmp_path / "params.npz"
    procs = [
        subprocess.Popen([sys.executable, str(script), str(i), str(out)], env=env) for i in range(2)
    ]
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0]
    s4, _ = _run_step(tiny_config(), jax.devices()[:4], synthetic_batch())
    expected = jax.tree.leaves(s4.g_params)
    got = np.load(out)
    assert len(got.files) == len(expected)
    for i, e in enumerate(expected):
        np.testing.assert_allclose(got[f"arr_{i}"], e, rtol=1e-5, atol=1e-7)


def _train_cmd(workdir, steps, extra=()):
    return [
        sys.executable,
        str(ROOT / "tests" / "train_tiny.py"),
        f"--workdir={workdir}",
        f"--steps={steps}",
        *extra,
    ]


def _final_state(workdir, steps):
    config = tiny_config()
    config.loss.fm_weight = 0.0  # one compiled step variant (FM is covered by the tests above)
    config.num_train_steps = steps
    return train_lib.train_and_evaluate(config, str(workdir))


def test_sigkill_resume_is_bit_identical_and_export_loads(tmp_path):
    reference = jax.device_get(_final_state(tmp_path / "reference", 6))
    # A run killed with SIGKILL right after its step-2 checkpoint is finalised...
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed, 1000))
    deadline = time.time() + 600
    while not (killed / "checkpoints" / "2").exists() and time.time() < deadline:
        time.sleep(0.2)
        assert proc.poll() is None, "training subprocess died"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # ...and resumed reaches exactly the uninterrupted run's parameters.
    resumed = jax.device_get(_final_state(killed, 6))
    for field in ("g_params", "d_params", "ema_params", "g_opt_state"):
        jax.tree.map(
            np.testing.assert_array_equal, getattr(resumed, field), getattr(reference, field)
        )
    loaded = export.load(killed / "export")
    jax.tree.map(np.testing.assert_array_equal, loaded.params, reference.ema_params)
    assert loaded.metadata["step"] == 6
    # The export CLI rebuilds the same export from the latest checkpoint.
    assert export.main(["--workdir", str(killed), "--out", str(tmp_path / "cli_export")]) == 0
    again = export.load(tmp_path / "cli_export")
    jax.tree.map(np.testing.assert_array_equal, again.params, reference.ema_params)
    generator = loaded.build()
    out = generator.apply(
        {"params": loaded.params}, np.zeros((1, 32, 32, 3), np.float32), None, deterministic=True
    )
    assert out.shape == (1, 32, 32, 3)


def test_sigterm_saves_and_exits_zero(tmp_path):
    proc = subprocess.Popen(_train_cmd(tmp_path, 1000, ["--checkpoint_every=1000"]))
    deadline = time.time() + 600
    log = tmp_path / "metrics.jsonl"
    # Orbax always saves the first step; wait until step 2 is logged so that a checkpoint past
    # step 1 can only come from the preemption handler's forced save.
    while not (log.exists() and len(log.read_text().splitlines()) >= 2):
        assert time.time() < deadline, "training subprocess too slow"
        time.sleep(0.2)
        assert proc.poll() is None, "training subprocess died"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 0
    steps = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert max(steps) >= 2  # the forced save at the step boundary after the signal
    assert not (tmp_path / "export").exists()  # a preempted run does not export


def test_restore_latest_without_checkpoint_returns_none(tmp_path):
    config = tiny_config()
    models, optimizers = train_state.make_models(config), train_state.make_optimizers(config)
    state = train_state.init_state(config, models, optimizers, jax.random.key(0))
    assert checkpoint.restore_latest(checkpoint.make_manager(str(tmp_path), config), state) is None


def test_export_errors_are_clear(tmp_path):
    with pytest.raises(export.ExportError, match="no such export"):
        export.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(export.ExportError, match="not a jpeg_jax export"):
        export.load(tmp_path / "empty")
    assert export.main(["--workdir", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 1
