"""FFHQ-128 at QF 5, the paper's "Ours" (lambda_C 0.1 -> 10): appendix A.2, Table 4.

Run: ``python train.py --config=configs/ffhq.py --workdir=runs/ffhq`` with
``--config.data.manual_dir=/path/to/ffhq`` (see README, "Training data"). 400k steps of batch 32
on accelerators; expect FID ~17 and consistency ~0.75 (Table 4) after the full schedule.
Set ``--config.model.generator.remat=True`` where a device has under ~32 GiB.
"""

from configs import default


def get_config():
    return default.get_config()
