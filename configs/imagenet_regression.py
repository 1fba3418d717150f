"""General-content MMSE regression model (blind QF 5-50, FiLM on).

Run: ``python train.py --config=configs/imagenet_regression.py --workdir=runs/imagenet_regression
--config.data.manual_dir=/path/to/imagenet``. 50k steps initialise the GAN
(configs/imagenet.py); the SM reference model is trained longer
(``--config.num_train_steps=650000``).
"""

from configs import imagenet


def get_config():
    config = imagenet.get_config()
    config.mode = "regression"
    config.num_train_steps = 50_000
    config.optim.lr_steps = 50_000
    config.loss.sm_weight = 0.0
    config.loss.sm_mmse_export = ""
    config.loss.perceptual_weight = 0.0
    config.init_from_export = ""
    return config
