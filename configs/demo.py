"""The demo: a small posterior-sampling GAN on the embedded scikit-image photos, on 2 CPU cores.

Run: ``python train.py --config=configs/demo.py --workdir=runs/demo`` (about 4 minutes on 2
cores). It trains a narrow RRDB generator on 32x32 patches at JPEG quality 10, exports the EMA
generator to ``runs/demo/export`` and writes ``runs/demo/demo.png`` (JPEG input, samples, their
mean, the original, for a held-out photo) and ``runs/demo/demo_metrics.json``.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.batch_size = 8
    config.num_train_steps = 1500
    config.log_every_steps = 50
    config.checkpoint_every_steps = 500
    config.keep_period = 0
    config.eval_every_steps = 500
    config.num_eval_images = 4
    config.demo_figure = True

    config.data.source = "embedded"
    config.data.patch_size = 32
    config.data.quality = 10
    config.data.eval_quality = 10
    config.data.eval_crop = 64

    g = config.model.generator
    g.num_feat, g.num_block, g.num_grow_ch = 32, 2, 16
    config.model.critic.widths = (16, 32, 64, 128)
    config.model.critic.blocks = (1, 1, 1, 1)

    config.optim.lr_init = 5e-4
    config.optim.lr_final = 1e-5
    config.optim.lr_steps = config.num_train_steps
    config.optim.ema_decay = 0.99

    config.loss.consistency_min, config.loss.consistency_max = 0.1, 10.0
    config.loss.consistency_steps = config.num_train_steps
    config.loss.fm_every = 2
    config.loss.fm_num_images = 4
    config.loss.fm_num_samples = 4
    return config
