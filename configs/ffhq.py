"""FFHQ-128 at QF 5, the paper's "Ours" (lambda_C 0.1 -> 10): appendix A.2, Table 4.

Run: ``python train.py --config=configs/ffhq.py --workdir=runs/ffhq`` with
``--config.data.manual_dir=/path/to/ffhq`` (see README, "Training data"). 400k steps of batch 32
on accelerators; expect FID ~17 and consistency ~0.75 (Table 4) after the full schedule.
The step needs ~25 GiB at batch 32 without remat; with ``--config.model.generator.scan=True
--config.model.generator.remat=True`` it compiles to under 8 GiB (12.6 GiB on FM steps).
"""

from configs import default


def get_config():
    return default.get_config()
