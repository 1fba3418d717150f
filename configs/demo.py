"""The demo: a small posterior-sampling GAN on the embedded scikit-image photos, on 2 CPU cores.

Run: ``python train.py --config=configs/demo.py --workdir=runs/demo`` (under 10 minutes on 2
CPU cores). It trains a narrow RRDB generator on 32x32 patches at JPEG quality 10 in two
phases: a regression warm-up (MSE; the critic learns on the warm-up's outputs in its last 1,000
steps, so that it is not at chance when the GAN starts), then the GAN (adversarial +
consistency + first-moment penalty) from there,
as the paper initialises its general-content GAN from a regression model. It exports the EMA
generator to ``runs/demo/export`` and writes ``runs/demo/demo.png`` (JPEG input, samples, their
mean and the original of a held-out photo, with a 4x zoom), ``demo_std.png`` and
``demo_metrics.json``. ``python -m jpeg_jax.demo_table`` then adds the Table-4 comparison.

Why these values (measured with ``benchmarks/demo_variants.py``; "Demo results" in
``benchmarks/RESULTS.md``): the budget goes mostly to cheap regression steps, whose PSNR gain
grows with steps; Adam b1 = 0.9 with a 2e-3 peak learning rate learns ~4x faster than the
paper's b1 = 0 at 5e-4 (which diverges at 2e-3); crops at about native scale (side 32-64) match
the photos the demo restores; the input skip lets the network learn the correction x - y.
Each patch's R, G, B come in a random order (``data.permute_channels``): trained on seven
photos, an MSE model otherwise memorises their colours (the regression model's consistency RMSE
on the held-out photo grew 4.2 -> 5.6 grey levels from step 3,000 to 4,500, in chroma).
In the GAN phase, FM's estimate ``mean((mean of S samples - x)^2)`` is the squared bias plus the
samples' variance / S: with few samples it also penalises diversity. One image x 16 samples at
FM weight 4 pulls the mean of the samples toward the original 4x as hard as the paper's weight 1
while penalising their variance as 4 images x 4 samples at weight 1 does, for the same 16
generator passes (mean of 16: +0.87 dB over the JPEG vs +0.67 dB, at the same per-pixel std).
Weight 8 on every 4th step is that pull and penalty on average at half the FM steps, which
cost 2.6x a GAN step. The GAN phase's learning rate (2.5e-4; the paper's 1e-4 is for 400k
steps) keeps the samples' mean near the warm-up's regression: +0.84 dB vs +0.78 at 5e-4.
The scanned RRDB stack compiles the GAN steps in half the time of the unrolled one at the same
step time.
"""

from configs import default

WARMUP_STEPS = 3500
GAN_STEPS = 1000
WARMUP_CRITIC_STEPS = 1000  # the critic learns on G(y, 0) in the warm-up's last steps


def get_config():
    config = default.get_config()
    steps = WARMUP_STEPS + GAN_STEPS
    config.batch_size = 8
    config.num_train_steps = steps
    config.regression_warmup_steps = WARMUP_STEPS
    config.regression_warmup_critic_steps = WARMUP_CRITIC_STEPS
    config.log_every_steps = 100
    config.checkpoint_every_steps = 1000
    config.keep_period = 0
    config.eval_every_steps = 1000
    config.num_eval_images = 4
    config.demo_figure = True

    config.data.source = "embedded"
    config.data.patch_size = 32
    config.data.max_crop_side = 64
    config.data.permute_channels = True
    config.data.quality = 10
    config.data.eval_quality = 10
    config.data.eval_crop = 64

    g = config.model.generator
    g.num_feat, g.num_block, g.num_grow_ch = 32, 2, 16
    g.input_skip = True
    g.scan = True  # one compiled RRDB: the GAN steps compile in half the time
    config.model.critic.widths = (16, 32, 64, 128)
    config.model.critic.blocks = (1, 1, 1, 1)

    config.optim.b1 = 0.9
    config.optim.warmup_lr_init = 2e-3  # the warm-up's cosine; the GAN's restarts at lr_init
    config.optim.lr_init = 2.5e-4
    config.optim.lr_final = 1e-5
    config.optim.lr_steps = steps
    config.optim.ema_decay = 0.99

    config.loss.consistency_min, config.loss.consistency_max = 0.1, 10.0
    config.loss.consistency_steps = steps
    config.loss.fm_every = 4
    config.loss.fm_weight = 8.0
    config.loss.fm_num_images = 1
    config.loss.fm_num_samples = 16
    return config
