"""FFHQ-128 MMSE regression model (the "Regression" row of Table 4; Xbar(Y) for SM).

Run: ``python train.py --config=configs/ffhq_regression.py --workdir=runs/ffhq_regression``.
The paper trains its reference MMSE model for 650k steps with an MSE loss; expect PSNR ~25.7 dB
at QF 5 and a blurry, highly consistent output.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.mode = "regression"
    config.num_train_steps = 650_000
    config.optim.lr_steps = 650_000
    return config
