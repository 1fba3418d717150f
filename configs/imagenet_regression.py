"""General-content MMSE regression model (blind QF 5-50, FiLM on): two runs of this config.

Run both (``--config.data.manual_dir=/path/to/imagenet``):

- the 50k-step warm start of the GAN (appendix A.2; ``configs/imagenet.py``'s
  ``init_from_export``):
  ``python train.py --config=configs/imagenet_regression.py --workdir=runs/imagenet_regression``
- the 650k-step reference MMSE model X̄(Y) of the second-moment penalty (appendix C;
  ``configs/imagenet.py``'s ``loss.sm_mmse_export``):
  ``python train.py --config=configs/imagenet_regression.py --config.num_train_steps=650000
  --workdir=runs/imagenet_regression_650k``

The learning-rate schedule follows ``num_train_steps`` (``lr_steps`` is a reference to it), so
the override moves it: cosine annealing over all 650k steps.
"""

from configs import imagenet


def get_config():
    config = imagenet.get_config()
    config.mode = "regression"
    config.num_train_steps = 50_000
    config.optim.lr_steps = config.get_ref("num_train_steps")
    config.loss.consistency_steps = config.get_ref("num_train_steps")
    config.loss.sm_weight = 0.0
    config.loss.sm_mmse_export = ""
    config.loss.perceptual_weight = 0.0
    config.init_from_export = ""
    return config
