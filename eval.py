"""Evaluate an exported generator with the appendix's protocol (Tables 4 and 5).

    python eval.py --config=configs/ffhq.py --checkpoint=runs/ffhq/export --out=runs/ffhq/eval \\
        --inception=fid_inception.npz --fid_reference=ffhq128_train_fid.npz \\
        [--mmse=runs/ffhq_regression/export] [--data=/path/to/images] [--batch_size=8]

The config's ``data`` section names the test set (FFHQ-128 test at QF 5; ImageNet ctest10k at
QF 10) and the FID reference split (FFHQ train; ImageNet validation). ``--fid_reference`` is
computed there first when the file does not exist (resumable; ``python -m jpeg_jax.fid_stats``
does the same on its own); without it FID/KID compare with the test images' own ground truth
(labelled "same-set" in metrics.md).
"""

from jpeg_jax.platform import configure_xla, restart_with_huge_pages

if __name__ == "__main__":
    restart_with_huge_pages()  # XLA:CPU's scratch memory in 2 MiB pages (jpeg_jax.platform)
configure_xla()

import os  # noqa: E402
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
    "quality", None, "JPEG quality of the test inputs (default: the config's data.eval_quality)."
)
flags.DEFINE_string("out", None, "Output directory for metrics.json, metrics.md and figures.")
flags.DEFINE_integer("num_samples", 16, "Samples per image for the -A mean and the std.")
flags.DEFINE_integer("fid_repeats", 3, "Independent samplings for FID mean +- std.")
flags.DEFINE_string("inception", None, "FID Inception weights (.npz); FID/KID skipped if absent.")
flags.DEFINE_string(
    "fid_reference",
    None,
    "FID/KID reference statistics (.npz of jpeg_jax.fid_stats or pytorch-fid); computed from "
    "the config's data.fid_reference_split first if missing. Unset: same-set comparison.",
)
flags.DEFINE_string("mmse", None, "MMSE regression export: 'Regression' row, Figure 6 panel.")
flags.DEFINE_integer("batch_size", 8, "Test images per generator call (all samples at once).")
flags.DEFINE_integer("max_images", -1, "Evaluate only the first N images (-1: all).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.mark_flags_as_required(["config", "checkpoint", "out"])


def main(argv):
    del argv
    data = FLAGS.config.data
    if FLAGS.data:
        data.source, data.path, data.eval_split, data.eval_subset = "folder", FLAGS.data, "all", ""
    if FLAGS.quality is not None:
        data.eval_quality = FLAGS.quality
    data.eval_num_examples = FLAGS.max_images
    if FLAGS.data and FLAGS.fid_reference and not os.path.exists(FLAGS.fid_reference):
        print(
            f"eval.py: error: {FLAGS.fid_reference} does not exist; with --data, make it first "
            "from a separate image set (python -m jpeg_jax.fid_stats --data=REFERENCE_FOLDER ...)",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        result = evaluate.evaluate(
            FLAGS.checkpoint,
            data,
            FLAGS.out,
            num_samples=FLAGS.num_samples,
            fid_repeats=FLAGS.fid_repeats,
            inception_path=FLAGS.inception,
            fid_reference=FLAGS.fid_reference,
            mmse_export=FLAGS.mmse,
            batch_size=FLAGS.batch_size,
            seed=FLAGS.seed,
        )
    except (export.ExportError, jpeg.JpegError, FileNotFoundError, ValueError, OSError) as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(evaluate.format_table(result))


if __name__ == "__main__":
    app.run(main)
