"""Evaluate an exported generator with the appendix's protocol (Tables 4 and 5).

    python eval.py --config=configs/ffhq.py --checkpoint=runs/ffhq/export --quality=5 \\
        --out=runs/ffhq/eval [--data=/path/to/images] [--inception=fid_inception.npz]
"""

from jpeg_jax.platform import configure_xla, restart_with_huge_pages

if __name__ == "__main__":
    restart_with_huge_pages()  # XLA:CPU's scratch memory in 2 MiB pages (jpeg_jax.platform)
configure_xla()

import sys  # noqa: E402

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jpeg_jax import evaluate, export, jpeg  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config whose `data` section describes the test set."
)
flags.DEFINE_string("checkpoint", None, "Export directory (train.py writes WORKDIR/export).")
flags.DEFINE_string("data", None, "Folder of test images (overrides the config's data source).")
flags.DEFINE_integer(
    "quality", None, "JPEG quality of the test inputs (paper: FFHQ 5, ImageNet 10)."
)
flags.DEFINE_string("out", None, "Output directory for metrics.json, metrics.md and figures.")
flags.DEFINE_integer("num_samples", 16, "Samples per image for the -A mean and the std.")
flags.DEFINE_integer("fid_repeats", 3, "Independent samplings for FID mean +- std.")
flags.DEFINE_string("inception", None, "FID Inception weights (.npz); FID/KID skipped if absent.")
flags.DEFINE_integer("max_images", -1, "Evaluate only the first N images (-1: all).")
flags.mark_flags_as_required(["config", "checkpoint", "out"])


def main(argv):
    del argv
    data = FLAGS.config.data
    data.unlock() if hasattr(data, "unlock") else None
    if FLAGS.data:
        data.source, data.path, data.eval_split = "folder", FLAGS.data, "all"
    if FLAGS.quality is not None:
        data.eval_quality = FLAGS.quality
    data.eval_num_examples = FLAGS.max_images
    try:
        result = evaluate.evaluate(
            FLAGS.checkpoint,
            data,
            FLAGS.out,
            num_samples=FLAGS.num_samples,
            fid_repeats=FLAGS.fid_repeats,
            inception_path=FLAGS.inception,
        )
    except (export.ExportError, jpeg.JpegError, FileNotFoundError, ValueError, OSError) as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(evaluate.format_table(result))


if __name__ == "__main__":
    app.run(main)
