"""A tiny training config and synthetic batches shared by the training tests."""

import numpy as np

from configs import demo
from jpeg_jax import jpeg


def tiny_config():
    config = demo.get_config()
    config.batch_size = 8
    config.num_train_steps = 6
    config.regression_warmup_steps = 0  # the GAN path from step 0 (the demo warms up first)
    config.log_every_steps = 2
    config.checkpoint_every_steps = 2
    config.eval_every_steps = 0
    config.demo_figure = False
    config.data.patch_size = 32
    config.data.shuffle_buffer = 16
    g = config.model.generator
    g.num_feat, g.num_block, g.num_grow_ch = 8, 1, 4
    config.model.critic.widths = (8, 8, 8, 8)
    config.model.critic.blocks = (1, 1, 1, 1)
    config.loss.fm_every = 2
    config.loss.fm_num_images = 2
    config.loss.fm_num_samples = 2
    return config


def synthetic_batch(batch: int = 8, size: int = 32, seed: int = 0, quality: int = 10) -> dict:
    """Smooth random images, their libjpeg-exact JPEG decode and tables."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (batch, size // 4, size // 4, 3))
    x = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(np.float32)
    x = np.round(x * 255) / 255
    qtables = np.broadcast_to(np.asarray(jpeg.quality_to_qtables(quality)), (batch, 2, 8, 8))
    y = np.asarray(jpeg.compress(x, qtables))
    return {"x": x, "y": y, "qtables": np.array(qtables, np.int32)}
