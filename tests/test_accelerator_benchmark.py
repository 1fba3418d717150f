"""benchmarks/accelerator.py runs end to end with --tiny (CPU) and writes a complete JSON; its
FLOP count is checked against the generator's closed-form convolution count."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import pytest
from train_helpers import subprocess_env

from benchmarks import accelerator

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _generator_forward_flops(side: int, nf: int, nb: int, gc: int, noise: int = 1) -> float:
    """2 x multiply-adds of every convolution of one ``side`` x ``side`` generator forward."""
    conv = lambda cin, cout: 9 * cin * cout
    rdb = sum(conv(nf + k * gc + noise, gc if k < 4 else nf) for k in range(5))
    low = conv(12, nf) + nb * 3 * rdb + conv(nf, nf)  # at side / 2
    high = conv(nf + noise, nf) + conv(nf, nf) + conv(nf, 3)
    return 2.0 * ((side // 2) ** 2 * low + side**2 * high)


def test_peak_table_matches_device_kinds():
    kinds = {
        "NVIDIA H100 80GB HBM3": "H100 SXM",
        "NVIDIA H100 PCIe": "H100 PCIe",
        "NVIDIA H200": "H200",
        "NVIDIA A100-SXM4-80GB": "A100",
        "TPU v4": "TPU v4",
        "TPU v5 lite": "TPU v5e",
        "TPU v5": "TPU v5p",
        "TPU v5p": "TPU v5p",
        "cpu": None,
    }
    for kind, row in kinds.items():
        assert accelerator.peak_row(kind) == row, kind
    for row in accelerator.PEAK_TFLOPS.values():
        assert row["bfloat16"] >= row["float32"] > 0


@pytest.mark.slow
def test_accelerator_benchmark_tiny_run_writes_complete_json(tmp_path):
    out = tmp_path / "accelerator.json"
    # Without TensorFlow, as on a GPU machine whose image lacks it (the script imports configs
    # and the models, not the input pipeline): a stand-in package that refuses to import.
    blocker = tmp_path / "no_tensorflow" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('TensorFlow is blocked in this test')")
    env = {**subprocess_env(), "JPEG_JAX_HUGE_PAGES": "0"}  # one CPU device, as a user's run
    env["PYTHONPATH"] = os.pathsep.join([str(blocker.parent), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "benchmarks/accelerator.py", "--tiny", "--cases", "fm_on"]
    cmd += ["--peak-tflops", "2", "--budget-s", "1e9", "--warmup", "1", "--out", str(out)]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| bfloat16/fm_on |" in proc.stdout and "samples/s" in proc.stdout
    assert "| profile | op s/step |" in proc.stdout
    r = json.loads(out.read_text())
    assert r["setup"]["tiny"] and r["skipped"] == [] and r["complete"]
    assert proc.stdout.count(f"wrote {out}") == 2 + 4 + 1  # after each case, then complete
    assert r["table"] in proc.stdout
    assert r["device"]["peak_tflops"] == {"bfloat16": 2.0, "float32": 2.0}
    s = r["setup"]
    assert set(r["train"]) == {"bfloat16/fm_on", "float32/fm_on"}
    g = s["generator"]
    g_fwd = _generator_forward_flops(s["size"], g["num_feat"], g["num_block"], g["num_grow_ch"])
    # G forward for the critic update, forward+backward (~3x) for the generator update and for
    # FM's samples; the critic and the JPEG core come on top.
    lower = 0.9 * g_fwd * (4 * s["batch"] + 3 * s["fm_num_images"] * s["fm_num_samples"])
    for name, case in r["train"].items():
        assert case["finite"] and case["skipped"] == 0, name
        assert lower <= case["model_flops"] <= 2.5 * lower, (name, case["model_flops"], lower)
        assert math.isclose(case["images_per_s"], s["batch"] / case["step_s"], rel_tol=1e-9)
        assert math.isclose(case["tflops_per_s"], case["model_flops"] / case["step_s"] / 1e12)
        assert math.isclose(case["mfu"], case["tflops_per_s"] / 2.0)
        assert len(case["step_s_all"]) == s["steps"] and case["compile_s"] > 0
        assert 0 < case["memory_gib"]["peak"] < 1
        profile = case["profile"]  # 3 steps under jax.profiler (XLA:CPU's thunks here)
        assert profile["steps"] == 3 and profile["ops"] and profile["op_s_per_step"] > 0
        assert math.isclose(sum(profile["share_by_kind"].values()), 1.0)
        assert profile["share_by_kind"]["convolution"] > 0.1  # a convolutional network
    assert set(r["sampling"]) == {f"{d}/{n}" for d in ("bfloat16", "float32") for n in (64, 128)}
    for name, case in r["sampling"].items():
        assert case["finite"] and case["samples_per_s"] > 0, name
        assert math.isclose(case["samples_per_s"], case["num_samples"] / case["s"])


def test_accelerator_benchmark_stops_at_its_deadline_and_keeps_its_json(tmp_path):
    """--deadline-s bounds the whole run, a case in progress included: exit status 3 and a JSON
    that says where it stopped (here before the first case ends)."""
    out = tmp_path / "accelerator.json"
    env = {**subprocess_env(), "JPEG_JAX_HUGE_PAGES": "0"}
    cmd = [sys.executable, "benchmarks/accelerator.py", "--tiny", "--deadline-s", "1"]
    cmd += ["--out", str(out)]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-3000:])
    r = json.loads(out.read_text())
    assert r["complete"] is False and r["train"] == {} and r["sampling"] == {}
    assert r["stopped"].startswith("deadline 1 s reached in "), r["stopped"]
    assert f"stopped: {r['stopped']}" in r["table"] and r["table"] in proc.stdout


def test_a_failing_case_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    """One case's exception (e.g. out of device memory) becomes that case's error row and the
    cases after it run; a FLOP count that fails leaves the step timed, without MFU."""

    def model_flops(config, batch, moments):
        raise RuntimeError("cost analysis is not available")

    def train_case(config, batch, moments, steps, warmup, limit_gib, flops, peak, *profile):
        if config.model.generator.dtype == "bfloat16":
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9 GiB.")
        return {"compile_s": 2.0, "remat": False, "step_s": 0.25, "images_per_s": 8.0,
                "memory_gib": {"peak": 1.5}, "model_flops": flops}  # fmt: skip

    def sampling_case(config, dtype, size, tile, overlap, n):
        if size == 64:
            raise ValueError("tile too small")
        return {"size": size, "tile": tile, "num_samples": n, "first_call_s": 1.0, "s": 0.5,
                "samples_per_s": n / 0.5, "finite": True, "scan": True}  # fmt: skip

    monkeypatch.setattr(accelerator, "model_flops", model_flops)
    monkeypatch.setattr(accelerator, "train_case", train_case)
    monkeypatch.setattr(accelerator, "sampling_case", sampling_case)
    out = tmp_path / "accelerator.json"
    r = accelerator.main(["--tiny", "--cases", "fm_off", "--out", str(out)])
    assert r == json.loads(out.read_text())
    assert r["complete"] and r["skipped"] == []
    assert r["errors"] == [
        "train bfloat16/fm_off",
        "sampling bfloat16/64",
        "sampling float32/64",
    ]
    assert r["train"]["bfloat16/fm_off"]["error"].startswith("RuntimeError: RESOURCE_EXHAUSTED")
    timed = r["train"]["float32/fm_off"]
    assert timed["model_flops"] is None and "mfu" not in timed
    assert timed["model_flops_error"] == "RuntimeError: cost analysis is not available"
    assert r["sampling"]["bfloat16/64"] == {"error": "ValueError: tile too small"}
    assert r["sampling"]["float32/128"]["samples_per_s"] == 4.0
    assert "| bfloat16/fm_off | failed: RuntimeError: RESOURCE_EXHAUSTED" in r["table"]
    assert "| float32/fm_off | 2.0 | False | 0.2500 | 8.00 | 1.50 | - | - | - |" in r["table"]
    assert "| float32/128 | 128 | 64 | 4.000 |" in r["table"]
    quiet = accelerator.main(["--tiny", "--cases", "fm_off", "--no-sampling", "--out", str(out)])
    assert quiet["sampling"] == {} and "| sampling |" not in quiet["table"]
    assert "| float32/fm_off | 2.0 |" in quiet["table"]


def _profile(planes):
    """A stand-in for ``jax.profiler.ProfileData``: {plane: {line: [(name, ns, stats)]}}, each
    line's events one after the other from 0 ns, unless an event gives its own start."""

    def line(name, events):
        out, start = [], 0.0
        for name_, ns, stats, *at in events:
            start = at[0] if at else start
            out.append(
                SimpleNamespace(name=name_, start_ns=start, duration_ns=ns, stats=stats.items())
            )
            start += ns
        return SimpleNamespace(name=name, events=out)

    return SimpleNamespace(
        planes=[
            SimpleNamespace(name=plane, lines=[line(n, e) for n, e in lines.items()])
            for plane, lines in planes.items()
        ]
    )


def test_profile_summary_of_a_gpu_and_a_cpu_trace():
    """Ops come from a device plane's "XLA Ops" line only (not from its kernels, which carry the
    same hlo_op stats, nor from "XLA Modules"); on XLA:CPU from the events with an hlo_op."""
    ms = 1e6
    gpu = _profile(
        {
            "/device:GPU:0": {
                "XLA Modules": [("jit_step", 10 * ms, {})],
                "XLA Ops": [
                    ("cudnn-conv.1", 3 * ms, {}),
                    ("cudnn-conv.2", 2 * ms, {}),
                    ("gemm_fusion_dot.6", 1 * ms, {}),
                    ("loop_add_fusion.3", 1 * ms, {}),
                    ("copy.4", 0.5 * ms, {}),
                    ("all-reduce.7", 0.2 * ms, {}),
                ],
                "Stream #7(compute)": [
                    ("sm90_xmma_fprop_bf16", 4 * ms, {"hlo_op": "cudnn-conv.1"}),
                    ("loop_add_fusion", 1 * ms, {"hlo_op": "loop_add_fusion.3"}),
                ],
            },
            "/host:CPU": {"python": [("PjitFunction(step)", 20 * ms, {})]},
        }
    )
    r = accelerator.profile_summary(gpu, steps=2, step_s=0.005)
    assert math.isclose(r["op_s_per_step"], 7.7e-3 / 2)
    assert math.isclose(r["busy"], 7.7e-3 / 2 / 0.005)
    expected = {"convolution": 5, "matmul": 1, "fusion": 1, "copy/transpose": 0.5, "other": 0.2}
    for kind, share in r["share_by_kind"].items():
        assert math.isclose(share, expected[kind] / 7.7), kind
    top = r["ops"][0]
    assert top["name"] == "cudnn-conv" and top["calls_per_step"] == 1
    assert math.isclose(top["s_per_step"], 2.5e-3) and math.isclose(top["share"], 5 / 7.7)
    assert [k["name"] for k in r["kernels"]] == ["sm90_xmma_fprop_bf16", "loop_add_fusion"]

    cpu = _profile(
        {
            "/host:CPU": {
                "python": [("PjitFunction(step)", 9 * ms, {})],
                "tf_XLAPjRtCpuClient/1": [
                    ("convolution.3", 6 * ms, {"hlo_op": "convolution.3"}),
                    ("ThreadpoolListener::StartRegion", 0, {}),
                    # A while loop holding a fusion, itself in a call: only the fusion counts.
                    ("while.5", 3 * ms, {"hlo_op": "while.5"}, 10 * ms),
                    ("call.6", 2.5 * ms, {"hlo_op": "call.6"}, 10.2 * ms),
                    ("fusion.12", 2 * ms, {"hlo_op": "fusion.12"}, 10.5 * ms),
                ],
            }
        }
    )
    r = accelerator.profile_summary(cpu, steps=1, step_s=0.004)
    assert [(o["name"], o["share"]) for o in r["ops"]] == [("convolution", 0.75), ("fusion", 0.25)]
    assert r["busy"] == 2.0 and r["kernels"] == []  # parallel thunks overlap
