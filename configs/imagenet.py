"""General content (ImageNet) with blind QF 5-50: FiLM on, SM, perceptual loss (appendix A.2).

Needs two regression exports (``configs/imagenet_regression.py``: the 50k-step warm start and
the 650k-step MMSE reference of SM) and VGG19 weights:
``python train.py --config=configs/imagenet.py --workdir=runs/imagenet
--config.data.manual_dir=/path/to/imagenet --config.loss.perceptual_vgg_path=vgg19.npz``
(defaults: ``init_from_export=runs/imagenet_regression/export``,
``loss.sm_mmse_export=runs/imagenet_regression_650k/export``).

Evaluation, Table 5 (ImageNet-ctest10k at QF 10, FID against the ImageNet validation set):
``python eval.py --config=configs/imagenet.py --checkpoint=runs/imagenet/export
--out=runs/imagenet/eval --inception=fid_inception.npz
--fid_reference=runs/imagenet_val_fid.npz --config.data.manual_dir=/path/to/imagenet``
(the reference file is computed first if missing). ``data.eval_subset=""`` evaluates the whole
validation set instead.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.source = "tfds"
    config.data.tfds_name = "imagenet2012"
    config.data.eval_split = "validation"
    config.data.eval_subset = "ctest10k"  # Table 5: the 10,000 files of Larsson et al. (2016)
    config.data.fid_reference_split = "validation"  # Table 5's ground truth: FID 2.67
    config.data.quality_mode = "blind"
    config.data.quality_min, config.data.quality_max = 5, 50
    config.data.eval_quality = 10
    config.model.generator.film = True
    config.model.critic.film = True
    config.optim.lr_final = 1e-6
    config.loss.consistency_min, config.loss.consistency_max = 1.0, 1e3
    config.loss.sm_weight = 1e3
    config.loss.sm_mmse_export = "runs/imagenet_regression_650k/export"  # 650k-step X̄(Y)
    config.loss.perceptual_weight = 1e-2
    config.loss.perceptual_vgg_path = "vgg19.npz"
    config.init_from_export = "runs/imagenet_regression/export"  # the 50k-step warm start
    return config
