"""The paper's hyper-parameters, pinned in the configs that claim to reproduce it.

Sources: the appendix (A.1 architecture, A.2 training; ``shared/paper/000_586bbc6be4e191a1.txt``)
and ``shared/paper/NOTES.md`` (what the appendix leaves open, from the authors' code). Each value
below is quoted from there; a config or schedule that drifts from it fails here.
"""

import math

import pytest

from configs import default, ffhq, ffhq_regression, imagenet, imagenet_regression
from jpeg_jax import schedules

GAN_STEPS = 400_000  # A.2: lr "annealed ... after 400,000 steps"; lambda_C over the same run


def _horizon(config, section: str, key: str) -> int:
    """The step count a schedule anneals over: its own key, or the run's length if it has none."""
    group = config[section]
    return group[key] if key in group else config.num_train_steps


def _shared_gan_values(config):
    """A.2, both datasets: Adam, batch 32, EMA 0.999, 1e-3 * V, lambda_R1 = 1, lambda_FM = 1,
    16 samples of the first 8 images every 8 iterations; A.1: 23 RRDBs; NOTES: betas (0, 0.99),
    64 features, growth 32, 128-pixel patches, lr 1e-4 at the start."""
    assert config.mode == "gan"
    assert config.batch_size == 32
    assert config.num_train_steps == GAN_STEPS
    assert (config.optim.b1, config.optim.b2) == (0.0, 0.99)
    assert config.optim.ema_decay == 0.999
    assert config.optim.lr_init == 1e-4
    assert _horizon(config, "optim", "lr_steps") == GAN_STEPS
    assert _horizon(config, "loss", "consistency_steps") == GAN_STEPS
    loss = config.loss
    assert loss.adversarial_weight == 1e-3 and loss.r1_weight == 1.0
    assert loss.fm_weight == 1.0 and loss.fm_every == 8
    assert (loss.fm_num_images, loss.fm_num_samples) == (8, 16)
    g = config.model.generator
    assert (g.num_block, g.num_feat, g.num_grow_ch) == (23, 64, 32) and g.noise
    assert config.data.patch_size == 128


def test_default_is_the_ffhq_gan():
    assert default.get_config().to_dict() == ffhq.get_config().to_dict()


def test_ffhq_ours():
    """A.2 FFHQ-128: lr 1e-4 -> 1e-7, lambda_C 1e-1 -> 1e1 ("Ours"); Table 4 at QF 5."""
    config = ffhq.get_config()
    _shared_gan_values(config)
    assert config.data.source == "ffhq" and config.data.ffhq_resolution == 128
    assert (config.data.quality_mode, config.data.quality, config.data.eval_quality) == (
        "fixed",
        5,
        5,
    )
    assert config.optim.lr_final == 1e-7
    assert (config.loss.consistency_min, config.loss.consistency_max) == (0.1, 10.0)
    # Neither SM nor P for faces; no FiLM (a single QF).
    assert config.loss.sm_weight == 0.0 and config.loss.perceptual_weight == 0.0
    assert not config.model.generator.film and not config.init_from_export


def test_imagenet_general_content():
    """A.2 General-Content: lr 1e-4 -> 1e-6, lambda_P 1e-2, lambda_SM 1e3, lambda_C 1 -> 1e3,
    initialised from a 50k-step MSE regression model; FiLM on the tables (A.1, blind QF);
    NOTES: blind QF floor(clip(5 + Exp(mean 10), 5, 50)); Table 5 at QF 10."""
    config = imagenet.get_config()
    _shared_gan_values(config)
    data = config.data
    assert (data.quality_mode, data.quality_min, data.quality_max, data.blind_mean) == (
        "blind",
        5,
        50,
        10.0,
    )
    assert data.eval_quality == 10
    assert config.optim.lr_final == 1e-6
    assert (config.loss.consistency_min, config.loss.consistency_max) == (1.0, 1e3)
    assert config.loss.sm_weight == 1e3 and config.loss.sm_mmse_export
    assert config.loss.perceptual_weight == 1e-2 and config.loss.perceptual_vgg_path
    assert config.model.generator.film and config.model.critic.film
    assert config.init_from_export  # the warm start below


def test_regression_models():
    """A.2: the GAN starts from a regression model trained 50,000 steps with MSE; the SM
    reference X_bar(Y) is one trained 650,000 steps (NOTES: also Table 4's "Regression")."""
    warm_start = imagenet_regression.get_config()
    assert warm_start.mode == "regression" and warm_start.num_train_steps == 50_000
    assert _horizon(warm_start, "optim", "lr_steps") == 50_000
    assert warm_start.model.generator.to_dict() == imagenet.get_config().model.generator.to_dict()
    assert warm_start.loss.sm_weight == 0.0 and not warm_start.init_from_export
    reference = ffhq_regression.get_config()
    assert reference.mode == "regression" and reference.num_train_steps == 650_000
    assert _horizon(reference, "optim", "lr_steps") == 650_000
    assert reference.model.generator.to_dict() == ffhq.get_config().model.generator.to_dict()


@pytest.mark.parametrize("module,final", [(ffhq, 1e-7), (imagenet, 1e-6)])
def test_learning_rate_schedule_endpoints(module, final):
    """Cosine annealing 1e-4 -> final over 400k steps, built from the config as training does."""
    o = module.get_config().optim
    lr = schedules.cosine_lr(
        o.lr_init, o.lr_final, _horizon(module.get_config(), "optim", "lr_steps")
    )
    assert math.isclose(float(lr(0)), 1e-4, rel_tol=1e-6)
    assert math.isclose(float(lr(GAN_STEPS // 2)), (1e-4 + final) / 2, rel_tol=1e-5)
    assert math.isclose(float(lr(GAN_STEPS)), final, rel_tol=1e-4)


@pytest.mark.parametrize("module,low,high", [(ffhq, 0.1, 10.0), (imagenet, 1.0, 1e3)])
def test_consistency_weight_schedule_endpoints(module, low, high):
    """lambda_C rises by cosine from low (step 0) to high (step 400k), NOTES' formula."""
    c = module.get_config()
    weight = schedules.cosine_increase(
        c.loss.consistency_min,
        c.loss.consistency_max,
        _horizon(c, "loss", "consistency_steps"),
    )
    for t in (0, GAN_STEPS // 4, GAN_STEPS // 2, GAN_STEPS):
        expected = low + 0.5 * (high - low) * (1 + math.cos(math.pi * (1 + t / GAN_STEPS)))
        assert math.isclose(float(weight(t)), expected, rel_tol=1e-5), t
    assert math.isclose(float(weight(GAN_STEPS)), high, rel_tol=1e-6)
