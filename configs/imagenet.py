"""General content (ImageNet) with blind QF 5-50: FiLM on, SM, perceptual loss (appendix A.2).

Needs a regression export for the initialisation and for SM, and VGG19 weights:
``python train.py --config=configs/imagenet.py --workdir=runs/imagenet
--config.data.manual_dir=/path/to/imagenet
--config.init_from_export=runs/imagenet_regression/export
--config.loss.sm_mmse_export=runs/imagenet_regression/export
--config.loss.perceptual_vgg_path=vgg19.npz``.
Evaluated on ImageNet ctest10k at QF 10 (Table 5).
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.source = "tfds"
    config.data.tfds_name = "imagenet2012"
    config.data.eval_split = "validation"
    config.data.quality_mode = "blind"
    config.data.quality_min, config.data.quality_max = 5, 50
    config.data.eval_quality = 10
    config.model.generator.film = True
    config.model.critic.film = True
    config.optim.lr_final = 1e-6
    config.loss.consistency_min, config.loss.consistency_max = 1.0, 1e3
    config.loss.sm_weight = 1e3
    config.loss.sm_mmse_export = "runs/imagenet_regression/export"
    config.loss.perceptual_weight = 1e-2
    config.loss.perceptual_vgg_path = "vgg19.npz"
    config.init_from_export = "runs/imagenet_regression/export"
    return config
