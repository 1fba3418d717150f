"""FFHQ-128 at QF 5 without the consistency penalty: Table 4's "lambda_C = 0" rows.

Run: ``python train.py --config=configs/ffhq_lambda0.py --workdir=runs/ffhq_lambda0``
(``--config.data.manual_dir=/path/to/ffhq``). Everything else is ``configs/ffhq.py`` ("Ours"):
adversarial loss, FM, 400k steps. Evaluate as ``configs/ffhq.py``:
``python eval.py --config=configs/ffhq.py --checkpoint=runs/ffhq_lambda0/export
--out=runs/ffhq_lambda0/eval --inception=fid_inception.npz
--fid_reference=runs/ffhq128_train_fid.npz``; its "sample" row is Table 4's "lambda_C = 0"
(FID 16.46, consistency 11.88) and its "-P" row "lambda_C = 0 -P" (FID 20.60).
"""

from configs import ffhq


def get_config():
    config = ffhq.get_config()
    config.loss.consistency_min = 0.0
    config.loss.consistency_max = 0.0
    return config
