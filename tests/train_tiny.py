"""Subprocess entry for the resume/preemption tests: the tiny config, N steps, a workdir."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jpeg_jax.platform import configure_xla  # noqa: E402

configure_xla(host_device_count=8)  # as the tests' in-process runs

from train_helpers import tiny_config  # noqa: E402

from jpeg_jax import train_lib  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--workdir", required=True)
parser.add_argument("--steps", type=int, required=True)
parser.add_argument("--checkpoint_every", type=int, default=2)
args = parser.parse_args()
config = tiny_config()
config.num_train_steps = args.steps
config.loss.fm_weight = 0.0  # as test_train._final_state: one compiled step variant
config.log_every_steps = 1
config.checkpoint_every_steps = args.checkpoint_every
train_lib.train_and_evaluate(config, args.workdir)
