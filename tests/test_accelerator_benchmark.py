"""benchmarks/accelerator.py runs end to end with --tiny (CPU) and writes a complete JSON; its
FLOP count is checked against the generator's closed-form convolution count."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

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

    def train_case(config, batch, moments, steps, warmup, limit_gib, flops, peak):
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
