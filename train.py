"""Train a stochastic JPEG decoder.

python train.py --config=configs/demo.py --workdir=runs/demo

Multi-host: the same command on every process, with --config.distributed=True (README,
"Training": SLURM, Open MPI, Cloud TPU, or explicit coordinator flags).
"""

from jpeg_jax.platform import configure_xla, restart_with_huge_pages

if __name__ == "__main__":
    restart_with_huge_pages()  # XLA:CPU's scratch memory in 2 MiB pages (jpeg_jax.platform)
configure_xla()

import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jpeg_jax import multihost, train_lib  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the export.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    try:
        train_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (train_lib.TrainingError, multihost.DistributedError, ValueError, OSError) as e:
        logging.error("%s", e)
        print(f"train.py: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
