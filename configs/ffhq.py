"""FFHQ-128 at QF 5, the paper's "Ours" (lambda_C 0.1 -> 10): appendix A.2, Table 4.

Run: ``python train.py --config=configs/ffhq.py --workdir=runs/ffhq`` with
``--config.data.manual_dir=/path/to/ffhq`` (see README, "Training data"). 400k steps of batch 32
on accelerators; expect FID ~17 and consistency ~0.75 (Table 4) after the full schedule.
The step needs ~25 GiB at batch 32 without remat; with ``--config.model.generator.scan=True
--config.model.generator.remat=True`` it compiles to under 8 GiB (12.6 GiB on FM steps).

Evaluation, Table 4 (the FFHQ-128 test split, images 60000-69999, at QF 5; FID against the
train split's statistics, ground truth 10.28 in the paper):
``python eval.py --config=configs/ffhq.py --checkpoint=runs/ffhq/export --out=runs/ffhq/eval
--inception=fid_inception.npz --fid_reference=runs/ffhq128_train_fid.npz
[--mmse=runs/ffhq_regression/export] --config.data.manual_dir=/path/to/ffhq`` (the reference
file is computed from the train split first if missing).
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.eval_split = "test"  # Table 4's test set
    config.data.fid_reference_split = "train"  # Table 4's reference statistics
    return config
