"""Write exports from training: the EMA generator of a train state or of a run's checkpoint.

Command line (export the latest checkpoint of a training run, or with ``--step N`` checkpoint N)::

    python -m jpeg_jax.export_checkpoint --workdir runs/demo --out exports/demo
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import ml_collections

from jpeg_jax import checkpoint, export, train_state


def export_params(config: ml_collections.ConfigDict, ema_params, path: str, *, step: int) -> str:
    """Write ``ema_params`` (host or device arrays) and the config's generator as an export.

    Metadata: the training ``step``, ``mode`` and the JPEG settings of the data.
    """
    metadata = {
        "step": int(step),
        "mode": config.mode,
        "subsampling": config.data.subsampling,
        "quality_mode": config.data.quality_mode,
        "quality": config.data.quality,
    }
    return export.save(path, train_state.generator_kwargs(config), ema_params, metadata=metadata)


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a training run recorded in ``WORKDIR/config.json``."""
    config_path = os.path.join(workdir, "config.json")
    if not os.path.isfile(config_path):
        raise export.ExportError(f"{workdir}: no config.json (not a jpeg_jax training directory)")
    with open(config_path) as f:
        return ml_collections.ConfigDict(json.load(f))


def check_steps(workdir: str, steps) -> list[int]:
    """The complete checkpoint steps of a training ``workdir``, after checking it holds each of
    ``steps``.

    Raises:
      ExportError: no training directory, or one of ``steps`` has no complete checkpoint there
        (the message names the steps present).
    """
    load_run_config(workdir)
    manager = checkpoint.make_manager(workdir, read_only=True)
    try:
        available = sorted(manager.all_steps())
    finally:
        manager.close()
    absent = [str(step) for step in steps if step not in available]
    if absent:
        word = "step" if len(absent) == 1 else "steps"
        there = ", ".join(map(str, available)) or "none"
        raise export.ExportError(
            f"{workdir}: no complete checkpoint at {word} {', '.join(absent)} (steps: {there})"
        )
    return available


def export_run(workdir: str, out: str, *, step: int | None = None) -> str:
    """Export the EMA generator of a training ``workdir``'s checkpoint ``step`` (default: the
    latest complete one).

    Raises:
      ExportError: no training directory, no complete checkpoint there, or none at ``step``.
    """
    config = load_run_config(workdir)
    config.init_from_export = ""  # the checkpoint holds the trained weights
    if step is not None:
        check_steps(workdir, [step])
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    state = train_state.init_state(config, models, optimizers, jax.random.key(0))
    manager = checkpoint.make_manager(workdir, read_only=True)
    try:
        if step is None:
            restored = checkpoint.restore_latest(manager, state)
        else:
            restored = checkpoint.restore(manager, state, step)
    finally:
        manager.close()
    if restored is None:
        raise export.ExportError(f"{workdir}: no complete checkpoint to export")
    return export_params(config, restored.ema_params, out, step=int(restored.step))


def main(argv=None) -> int:
    from jpeg_jax.platform import configure_xla

    configure_xla()
    parser = argparse.ArgumentParser(
        prog="python -m jpeg_jax.export_checkpoint",
        description="Export the EMA generator of a training run's checkpoint.",
    )
    parser.add_argument("--workdir", required=True, help="training directory (train.py --workdir)")
    parser.add_argument("--out", required=True, help="export directory to write")
    parser.add_argument("--step", type=int, help="checkpoint step to export (default: the latest)")
    args = parser.parse_args(argv)
    try:
        path = export_run(args.workdir, args.out, step=args.step)
    except (export.ExportError, OSError, ValueError) as e:
        print(f"export_checkpoint: error: {e}", file=sys.stderr)
        return 1
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
