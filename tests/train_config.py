"""The training tests' tiny config, as a config file for train.py.

python train.py --config=tests/train_config.py --workdir=/tmp/tiny (seconds per step on 2 cores)
"""

from configs import demo


def get_config():
    config = demo.get_config()
    config.batch_size = 8
    config.num_train_steps = 6
    config.regression_warmup_steps = 0  # the GAN path from step 0 (the demo warms up first)
    config.log_every_steps = 2
    config.checkpoint_every_steps = 2
    config.eval_every_steps = 0
    config.num_eval_images = 2
    config.demo_figure = False
    config.data.patch_size = 32
    config.data.shuffle_buffer = 16
    g = config.model.generator
    g.num_feat, g.num_block, g.num_grow_ch = 8, 1, 4
    config.model.critic.widths = (8, 8, 8, 8)
    config.model.critic.blocks = (1, 1, 1, 1)
    config.loss.fm_weight = 1.0  # the paper's (the demo pulls harder with one image: demo.py)
    config.loss.fm_every = 2
    config.loss.fm_num_images = 2
    config.loss.fm_num_samples = 2
    return config
