"""FFHQ-128 MMSE regression model (the "Regression" row of Table 4; X̄(Y) for SM).

Run: ``python train.py --config=configs/ffhq_regression.py --workdir=runs/ffhq_regression``.
The paper trains its reference MMSE model for 650k steps with an MSE loss; expect PSNR ~25.7 dB
at QF 5 and a blurry, highly consistent output. The learning-rate schedule (and the unused
lambda_C schedule) follow ``num_train_steps``: ``--config.num_train_steps=N`` moves them too.
Evaluate it as the "Regression" row and Figure 6's X̄(Y) with
``python eval.py --config=configs/ffhq.py ... --mmse=runs/ffhq_regression/export``.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.mode = "regression"
    config.num_train_steps = 650_000
    config.optim.lr_steps = config.get_ref("num_train_steps")
    config.loss.consistency_steps = config.get_ref("num_train_steps")
    return config
