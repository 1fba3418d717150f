"""benchmarks/conv_grads.py runs with --tiny: its d/dx and both d/dkernel formulations agree with
XLA's own convolution gradients (the script asserts it) and it writes its JSON."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from train_helpers import subprocess_env

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_conv_grads_benchmark_tiny_run(tmp_path):
    out = tmp_path / "conv_grads.json"
    cmd = [sys.executable, "benchmarks/conv_grads.py", "--tiny", "--iters", "1", "--out", str(out)]
    env = {**subprocess_env(), "JPEG_JAX_HUGE_PAGES": "0"}
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["batch"], r["cin"], r["cout"]) for r in rows] == [(2, 9, 4)]
    for name in ("fwd", "dx", "dk_plain", "dk"):
        assert rows[0][f"{name}_ms"] > 0
