"""The train step and loop: sharding invariance, multi-process equivalence, NaN skipping,
resume, preemption of a single process, exports from checkpoints.

Two-process runs of the whole train.py (end of run, preemption of one process, a lost process)
are in test_multihost.py."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from train_helpers import (
    ROOT,
    Processes,
    free_port,
    logged_steps,
    subprocess_env,
    synthetic_batch,
    tiny_config,
    train_command,
    wait_for_step,
)

from jpeg_jax import (
    checkpoint,
    export,
    export_checkpoint,
    multihost,
    train_lib,
    train_state,
    train_step,
)


def _run_step(config, devices, batch, seed=0):
    """One step on a mesh of ``devices`` from the state of ``seed``: (new state, metrics)."""
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


@pytest.mark.slow
def test_non_finite_batch_is_skipped():
    config = tiny_config()
    batch = synthetic_batch()
    batch["x"][0, 0, 0, 0] = np.nan
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    before = jax.device_get(train_state.init_state(config, models, optimizers, jax.random.key(0)))
    # The 1-device program of the sharding test below, on a batch with a NaN.
    after, metrics = _run_step(config, jax.devices()[:1], batch)
    assert float(metrics["skipped"]) == 1 and int(after.skips) == 1 and int(after.step) == 1
    for a, b in ((after.g_params, before.g_params), (after.ema_params, before.ema_params)):
        jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), b)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(after.d_params), before.d_params)


_WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r}); sys.path.insert(0, {root!r})
    from jpeg_jax.platform import configure_xla
    configure_xla(host_device_count=4)
    import jax, numpy as np
    pid = int(sys.argv[1])
    jax.distributed.initialize("localhost:{port}", num_processes=2, process_id=pid)
    from train_helpers import synthetic_batch, tiny_config
    from jpeg_jax import train_state, train_step
    config = tiny_config()
    batch = synthetic_batch()
    local = {{k: v[4 * pid : 4 * pid + 4] for k, v in batch.items()}}  # 1 image per device
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


@pytest.mark.slow
def test_step_on_1_device_8_devices_and_2_processes_agree(tmp_path):
    """One step of the tiny config on 1 device, on 8 devices of one process, and on 2 processes
    x 4 devices (the same 8-device mesh, each process feeding its half of the batch)."""
    port = free_port()
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(tests=str(ROOT / "tests"), root=str(ROOT), port=port))
    env = subprocess_env(4)
    out = tmp_path / "params.npz"
    procs = [
        subprocess.Popen([sys.executable, str(script), str(i), str(out)], env=env) for i in range(2)
    ]
    try:
        config, batch = tiny_config(), synthetic_batch()
        s8, m8 = _run_step(config, jax.devices()[:8], batch)
        s1, m1 = _run_step(config, jax.devices()[:1], batch)
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert int(s8.step) == 1 and float(m8["skipped"]) == 0
    # Same math, different reduction order across devices: float32 round-off only.
    assert _max_rel_diff(s8.g_params, s1.g_params) < 1e-4
    assert _max_rel_diff(s8.d_params, s1.d_params) < 1e-4
    for k in m1:
        np.testing.assert_allclose(m8[k], m1[k], rtol=1e-4, atol=1e-6)
    assert codes == [0, 0]
    expected = jax.tree.leaves(s8.g_params)
    got = np.load(out)
    assert len(got.files) == len(expected)
    for i, e in enumerate(expected):
        np.testing.assert_allclose(got[f"arr_{i}"], e, rtol=1e-5, atol=1e-7)


# A single process with 8 simulated devices (tests/conftest.py's XLA_FLAGS), as in-process runs.
_TINY = ("--config.loss.fm_weight=0", "--config.log_every_steps=1")
_FINAL = 6


def _final_state(workdir, steps):
    config = tiny_config()  # FM on (fm_every 2): both compiled step variants
    config.num_train_steps = steps
    config.log_every_steps = 1
    return train_lib.train_and_evaluate(config, str(workdir))


def _assert_states_equal(got, want):
    """Every leaf of two ``TrainState``s (params, both optimizer states, EMA, step, skips)."""
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(got)
    want_leaves, want_def = jax.tree.flatten(want)
    assert got_def == want_def
    for (path, a), b in zip(got_leaves, want_leaves, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def _wait_for_checkpoint(workdir, step, processes, proc, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        manager = checkpoint.make_manager(str(workdir), read_only=True)
        steps = manager.all_steps()
        manager.close()
        if step in steps:
            return
        assert proc.poll() is None, processes.tails()
        assert time.monotonic() < deadline, f"no checkpoint {step} in {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigkill_resume_restores_the_whole_state_and_export_loads(tmp_path, caplog):
    reference = jax.device_get(_final_state(tmp_path / "reference", _FINAL))
    # A run with FM on, killed with SIGKILL once its only checkpoint, step 1, is on disk (orbax
    # saves the first step; the next interval step is 1000)...
    killed = tmp_path / "killed"
    flags = ("--config.log_every_steps=1", "--config.num_train_steps=1000")
    with Processes(tmp_path) as processes:
        proc = processes.start(
            train_command(killed, *flags, "--config.checkpoint_every_steps=1000"),
            os.environ,
            "killed",
        )
        wait_for_step(killed, 1, processes, [proc])
        _wait_for_checkpoint(killed, 1, processes, proc)
        proc.kill()
        proc.wait()
    manager = checkpoint.make_manager(str(killed), read_only=True)
    assert manager.all_steps() == [1]  # pinned: 0 < 1 < _FINAL
    manager.close()
    killed_lines = len(logged_steps(killed))
    assert killed_lines >= 1
    # ...resumes from step 1 (not from 0: a restore that did nothing would start the state at
    # step 0) and reaches exactly the uninterrupted run's state, every leaf of it.
    caplog.set_level(logging.INFO, logger="absl")
    resumed = jax.device_get(_final_state(killed, _FINAL))
    assert "resuming from the checkpoint at step 1 of 6" in caplog.text
    assert logged_steps(killed)[killed_lines:] == list(range(2, _FINAL + 1))
    assert int(resumed.step) == _FINAL and int(resumed.skips) == 0
    _assert_states_equal(resumed, reference)
    loaded = export.load(killed / "export")
    jax.tree.map(np.testing.assert_array_equal, loaded.params, reference.ema_params)
    assert loaded.metadata["step"] == _FINAL
    # The export CLI rebuilds the same export from the latest checkpoint.
    out = tmp_path / "cli_export"
    assert export_checkpoint.main(["--workdir", str(killed), "--out", str(out)]) == 0
    again = export.load(out)
    jax.tree.map(np.testing.assert_array_equal, again.params, reference.ema_params)
    assert again.metadata == loaded.metadata
    generator = loaded.build()
    sample = generator.apply(
        {"params": loaded.params}, np.zeros((1, 32, 32, 3), np.float32), None, deterministic=True
    )
    assert sample.shape == (1, 32, 32, 3)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_preemption_signal_saves_and_exits_zero(tmp_path, sig):
    flags = (*_TINY, "--config.num_train_steps=1000", "--config.checkpoint_every_steps=1000")
    with Processes(tmp_path) as processes:
        proc = processes.start(train_command(tmp_path, *flags), os.environ, "train")
        # Orbax always saves the first step; wait until step 2 is logged so that a checkpoint
        # past step 1 can only come from the preemption's save.
        wait_for_step(tmp_path, 2, processes, [proc])
        proc.send_signal(sig)
        assert processes.wait([proc], 300) == [0], processes.tails([proc])
        assert "stops after step" in processes.output(proc)
    steps = checkpoint.make_manager(str(tmp_path), read_only=True).all_steps()
    assert max(steps) >= 2 and max(steps) == max(logged_steps(tmp_path))
    assert not (tmp_path / "export").exists()  # a preempted run does not export


def test_preemption_flag_of_a_single_process():
    """Without jax.distributed, SIGINT or SIGTERM sets a flag; the loop stops at its next step."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    asked = []
    with multihost.Preemption(asked.append) as preemption:
        assert not preemption.reached(3)
        os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode boundary
        assert preemption.reached(4) and preemption.reached(5)
        assert preemption.stop_step == 4
        assert signal.getsignal(signal.SIGINT) == before[0]  # a second SIGINT: stop at once
    assert asked == []  # the multi-process agreement is not consulted
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_moment_steps_are_decided_in_one_place():
    config = tiny_config()  # GAN, fm_weight 1, fm_every 2
    assert [train_step.is_moment_step(config, s) for s in range(4)] == [True, False, True, False]
    config.loss.fm_weight = 0.0
    assert not train_step.is_moment_step(config, 0)
    config.loss.sm_weight = 1.0
    assert train_step.is_moment_step(config, 0)
    config.mode = "regression"
    assert not train_step.is_moment_step(config, 0)


def test_distributed_without_a_cluster_is_a_clear_error(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "OMPI_", "JAX_C", "KUBERNETES_"))
    }
    result = subprocess.run(
        train_command(tmp_path, "--config.distributed=True"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "train.py: error: cannot start jax.distributed" in result.stderr
    assert "--config.coordinator_address" in result.stderr
    assert "Traceback" not in result.stderr


def test_distributed_settings_come_from_flags_then_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(multihost, "initialize", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    config = tiny_config()
    assert not train_lib.maybe_initialize_distributed(config) and calls == []
    config.coordinator_address, config.num_processes, config.process_id = "h0:1234", 4, 3
    config.heartbeat_timeout_s = 7
    assert train_lib.maybe_initialize_distributed(config)
    assert calls[-1] == dict(
        coordinator_address="h0:1234",
        num_processes=4,
        process_id=3,
        heartbeat_timeout_s=7,
        initialization_timeout_s=300,
    )
    config = tiny_config()  # no flags: the environment, else the cluster's (None)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "h1:99")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "0")
    assert train_lib.maybe_initialize_distributed(config)
    assert (calls[-1]["coordinator_address"], calls[-1]["num_processes"]) == (None, 2)
    assert calls[-1]["process_id"] == 0  # process 0 is not "unset"
    monkeypatch.setenv("JAX_PROCESS_ID", "one")
    with pytest.raises(multihost.DistributedError, match="JAX_PROCESS_ID='one' is not an integer"):
        train_lib.maybe_initialize_distributed(config)


def test_restore_latest_without_checkpoint_returns_none(tmp_path):
    config = tiny_config()
    models, optimizers = train_state.make_models(config), train_state.make_optimizers(config)
    state = train_state.init_state(config, models, optimizers, jax.random.key(0))
    manager = checkpoint.make_manager(str(tmp_path), save_interval_steps=2, max_to_keep=3)
    assert checkpoint.restore_latest(manager, state) is None


def test_export_errors_are_clear(tmp_path):
    with pytest.raises(export.ExportError, match="no such export"):
        export.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(export.ExportError, match="not a jpeg_jax export"):
        export.load(tmp_path / "empty")
    empty = str(tmp_path / "empty")
    assert export_checkpoint.main(["--workdir", empty, "--out", str(tmp_path / "x")]) == 1


def test_export_of_a_chosen_checkpoint_step(tmp_path, capsys):
    """``step=`` (CLI ``--step``) exports that checkpoint's EMA params; a missing step is an
    error naming the steps there, also from ``check_steps`` before any export."""
    config = tiny_config()
    (tmp_path / "config.json").write_text(config.to_json_best_effort(indent=2))
    models, optimizers = train_state.make_models(config), train_state.make_optimizers(config)
    template = train_state.init_state(config, models, optimizers, jax.random.key(0))
    manager = checkpoint.make_manager(str(tmp_path))
    for step in (2, 4):  # EMA params that differ between the steps
        ema = jax.tree.map(lambda a, s=step: a + s, template.ema_params)
        state = template.replace(step=np.asarray(step, template.step.dtype), ema_params=ema)
        assert checkpoint.save(manager, state, force=True)
    manager.wait_until_finished()
    manager.close()
    manager = checkpoint.make_manager(str(tmp_path), read_only=True)
    saved = {step: jax.device_get(checkpoint.restore(manager, template, step)) for step in (2, 4)}
    manager.close()

    path = export_checkpoint.export_run(str(tmp_path), str(tmp_path / "e"), step=2)
    cli = ("--workdir", str(tmp_path), "--out")
    assert export_checkpoint.main([*cli, str(tmp_path / "cli2"), "--step", "2"]) == 0
    assert export_checkpoint.main([*cli, str(tmp_path / "latest")]) == 0
    for out, step in ((path, 2), (tmp_path / "cli2", 2), (tmp_path / "latest", 4)):
        loaded = export.load(out)
        assert loaded.metadata["step"] == step
        jax.tree.map(np.testing.assert_array_equal, loaded.params, saved[step].ema_params)

    missing = r"no complete checkpoint at step 3 \(steps: 2, 4\)"
    with pytest.raises(export.ExportError, match=missing):
        export_checkpoint.export_run(str(tmp_path), str(tmp_path / "e3"), step=3)
    capsys.readouterr()
    assert export_checkpoint.main([*cli, str(tmp_path / "e3"), "--step", "3"]) == 1
    assert "steps: 2, 4" in capsys.readouterr().err
    assert not (tmp_path / "e3").exists()
    # The check a long job runs before it starts (benchmarks/demo_checkpoints.py).
    assert export_checkpoint.check_steps(str(tmp_path), [4, 2]) == [2, 4]
    with pytest.raises(export.ExportError, match=r"at steps 3, 5 \(steps: 2, 4\)"):
        export_checkpoint.check_steps(str(tmp_path), [2, 3, 5])
    with pytest.raises(export.ExportError, match="no config.json"):
        export_checkpoint.check_steps(str(tmp_path / "e"), [2])


def test_training_modules_form_no_import_cycle():
    """export.py is the file format only: it imports no training module, and the training
    modules import each other in one direction."""
    import ast

    names = ("export", "train_state", "checkpoint", "train_step", "export_checkpoint", "train_lib")
    imports = {}
    for name in names:
        tree = ast.parse((ROOT / "jpeg_jax" / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "jpeg_jax":
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jpeg_jax."):
                found.add(node.module.split(".")[1])
        imports[name] = found & set(names)
    assert imports["export"] == set()
    order = {name: i for i, name in enumerate(names)}  # each imports only earlier ones
    for name, deps in imports.items():
        assert all(order[d] < order[name] for d in deps), (name, deps)
