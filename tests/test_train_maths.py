"""The train step against an independent computation of the paper's equations.

Each test runs the package's jitted step once from a known state and recomputes, in this file,
the same step from the same params, batch and noise: the losses written from the paper (critic:
Eq. 9, non-saturating logistic loss + R1 from per-sample input gradients; generator: Eq. 10,
1e-3 * V + lambda_C(t) * C + lambda_FM * FM [+ lambda_SM * SM + lambda_P * P], appendix C for SM,
ESRGAN's VGG loss for P), the schedules in closed form, Adam by hand (bias correction, the
learning rate read at the optimizer's count) and the EMA ``d * e + (1 - d) * p``. Only the
models' ``apply`` (G, D, VGG19) and the JPEG core (``jpeg.encode``, ``jpeg.quantized_dct``) are
shared with the code under test. Every leaf of the new state is compared.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import random_params
from train_helpers import synthetic_batch, tiny_config

from jpeg_jax import export, jpeg, train_state, train_step
from jpeg_jax.models import Generator, vgg

# The paper's values, written here rather than read from the code.
ADVERSARIAL_WEIGHT = 1e-3  # "We scale V(D, G) in Eq. 10 by 1e-3"
ADAM_EPS = 1e-8  # PyTorch's and optax's default (the paper gives none)
HINGE_LOW, HINGE_HIGH = 0.4, 0.6  # consistency hinge: 0 | 2.5 (e - 0.4)^2 | e - 0.5
VGG_LAYER_WEIGHTS = {  # BasicSR / Real-ESRGAN PerceptualLoss
    "conv1_2": 0.1,
    "conv2_2": 0.1,
    "conv3_4": 1.0,
    "conv4_4": 1.0,
    "conv5_4": 1.0,
}


def _config(mode: str = "gan"):
    config = tiny_config()
    config.mode = mode
    # Short schedules: lambda_C and the learning rate move visibly between steps 0, 1, 2.
    config.optim.lr_steps = 5
    config.optim.lr_init, config.optim.lr_final = 1e-3, 1e-5
    config.loss.consistency_steps = 5
    config.loss.consistency_min, config.loss.consistency_max = 0.5, 20.0
    config.loss.fm_weight = 0.7  # not 1: a dropped weight changes the result
    config.optim.ema_decay = 0.9
    # The unrolled stack (the demo's scan reorders G's sums: 1.1e-6 off the reference in the
    # Adam step of a near-zero gradient; scan = unrolled is tests/test_platform.py's check).
    config.model.generator.scan = False
    return config


# ----------------------------------------------------------------------------- closed forms


def _lambda_c(cl, t: int) -> float:
    """lambda_C(t) = min + (max - min) (1 + cos(pi (1 + t / T))) / 2, held after T."""
    t = min(max(t, 0), cl.consistency_steps) / cl.consistency_steps
    lo, hi = cl.consistency_min, cl.consistency_max
    return lo + 0.5 * (hi - lo) * (1.0 + math.cos(math.pi * (1.0 + t)))


def _lr(o, count: int) -> float:
    """Cosine annealing lr_init -> lr_final over lr_steps."""
    t = min(count, o.lr_steps) / o.lr_steps
    return o.lr_final + (o.lr_init - o.lr_final) * 0.5 * (1.0 + math.cos(math.pi * t))


def _softplus(z):
    return jnp.logaddexp(0.0, z)


def _adam(o, params, grads, opt_state):
    """One Adam step by hand: ``(new_params, new_opt_state)`` in optax's state layout
    (``(ScaleByAdamState(count, mu, nu), ScaleByScheduleState(count))``)."""
    adam, sched = opt_state
    count = int(adam.count) + 1
    lr = _lr(o, int(sched.count))  # the schedule is read before its count advances
    mu = jax.tree.map(lambda m, g: o.b1 * m + (1 - o.b1) * g, adam.mu, grads)
    nu = jax.tree.map(lambda v, g: o.b2 * v + (1 - o.b2) * g * g, adam.nu, grads)

    def new_param(p, m, v):
        m_hat, v_hat = m / (1 - o.b1**count), v / (1 - o.b2**count)
        return p - lr * m_hat / (jnp.sqrt(v_hat) + ADAM_EPS)

    params = jax.tree.map(new_param, params, mu, nu)
    state = (adam._replace(count=jnp.int32(count), mu=mu, nu=nu), sched._replace(count=count))
    return params, state


# ----------------------------------------------------------------------------- the losses


def _g(generator, params, y, qt, key):
    return generator.apply({"params": params}, y, qt, rngs={"noise": key})


def _d(critic, params, x, y):
    return critic.apply({"params": params}, x, y, None)


def _critic_objective(d_params, critic, x, y, fake, r1_weight):
    """Eq. 9: softplus(-D(x, y)) + softplus(D(x_hat, y)) + r1/2 E ||grad_x D(x, y)||^2, the
    input gradient taken image by image."""
    adv = jnp.mean(_softplus(-_d(critic, d_params, x, y))) + jnp.mean(
        _softplus(_d(critic, d_params, fake, y))
    )
    one = lambda xi, yi: _d(critic, d_params, xi[None], yi[None])[0]
    grads = jax.vmap(jax.grad(one))(x, y)
    r1 = 0.5 * r1_weight * jnp.mean(jnp.sum(grads**2, axis=(1, 2, 3)))
    return adv + r1, {"d_loss": adv, "r1": r1}


def _consistency(x, x_hat, qt, subsampling):
    """C: hinge of |DCT(YCbCr(x_hat)) / Q - q| over every Y, Cb, Cr coefficient, q the
    coefficients of the file made from x. x_hat is clipped to [0, 1] as the saved file would be
    (straight-through: the float pipeline's gradient)."""
    q = jpeg.encode(x, qt, subsampling=subsampling)
    clipped = x_hat + jax.lax.stop_gradient(jnp.clip(x_hat, 0.0, 1.0) - x_hat)
    c = jpeg.quantized_dct(clipped, qt, subsampling=subsampling)
    e = jnp.concatenate(
        [jnp.abs(a - b).reshape(a.shape[0], -1) for a, b in zip(c, q) if a is not None], axis=1
    )
    width = HINGE_HIGH - HINGE_LOW
    hinge = jnp.where(
        e <= HINGE_LOW,
        0.0,
        jnp.where(
            e <= HINGE_HIGH, (e - HINGE_LOW) ** 2 / (2 * width), e - 0.5 * (HINGE_LOW + HINGE_HIGH)
        ),
    )
    return jnp.mean(hinge)


def _perceptual(vgg_params, x, x_hat):
    model = vgg.VGG19Features(last_layer="conv5_4")
    f_hat, f = model.apply({"params": vgg_params}, x_hat), model.apply({"params": vgg_params}, x)
    return sum(w * jnp.mean(jnp.abs(f_hat[k] - f[k])) for k, w in VGG_LAYER_WEIGHTS.items())


def _generator_objective(g_params, *, config, models, d_params, batch, keys, step, moments, frozen):
    """Eq. 10 with the appendix's FM, SM and P terms."""
    generator, critic = models
    cl = config.loss
    x, y, qt = batch["x"], batch["y"], batch["qtables"]
    g_key, moment_key = keys
    x_hat = _g(generator, g_params, y, qt, g_key)
    aux = {
        "g_adv": jnp.mean(_softplus(-_d(critic, d_params, x_hat, y))),
        "consistency": _consistency(x, x_hat, qt, config.data.subsampling),
        "fm": jnp.zeros(()),
        "sm": jnp.zeros(()),
    }
    if moments:
        n, s = cl.fm_num_images, cl.fm_num_samples
        samples = [
            _g(generator, g_params, y[:n], qt[:n], k) for k in jax.random.split(moment_key, s)
        ]
        mean = sum(samples) / s
        aux["fm"] = jnp.mean((mean - x[:n]) ** 2)
        if "mmse" in frozen:
            x_mmse = generator.apply({"params": frozen["mmse"]}, y[:n], qt[:n], deterministic=True)
            var = sum((v - mean) ** 2 for v in samples) / s
            aux["sm"] = jnp.mean(jnp.abs(var - (x[:n] - x_mmse) ** 2))
    total = ADVERSARIAL_WEIGHT * aux["g_adv"] + _lambda_c(cl, step) * aux["consistency"]
    total += cl.fm_weight * aux["fm"] + cl.sm_weight * aux["sm"]
    if "vgg" in frozen:
        aux["perceptual"] = _perceptual(frozen["vgg"], x, x_hat)
        total += cl.perceptual_weight * aux["perceptual"]
    return total, aux


def _reference_step(config, models, state, batch, key, moments):
    """The whole step, independently: critic (GAN), generator, EMA; ``(state, metrics)``."""
    generator, critic = models
    step = int(state.step)
    d_key, g_key, moment_key = jax.random.split(jax.random.fold_in(key, step), 3)
    x, y, qt = batch["x"], batch["y"], batch["qtables"]
    metrics = {"lambda_c": _lambda_c(config.loss, step), "lr": _lr(config.optim, step)}
    d_params, d_opt_state = state.d_params, state.d_opt_state
    if config.mode == "gan":
        fake = _g(generator, state.g_params, y, qt, d_key)  # a constant for the critic
        objective = jax.jit(jax.value_and_grad(_critic_objective, has_aux=True), static_argnums=1)
        (_, aux), grads = objective(d_params, critic, x, y, fake, config.loss.r1_weight)
        d_params, d_opt_state = _adam(config.optim, d_params, grads, d_opt_state)
        metrics.update(aux)

        def g_objective(g_params):
            return _generator_objective(
                g_params,
                config=config,
                models=models,
                d_params=d_params,  # the critic just updated (alternating steps)
                batch=batch,
                keys=(g_key, moment_key),
                step=step,
                moments=moments,
                frozen=state.frozen,
            )

    else:

        def g_objective(g_params):
            x_hat = generator.apply({"params": g_params}, y, qt, deterministic=True)
            mse = jnp.mean((x_hat - x) ** 2)
            return mse, {"mse": mse}

    (g_loss, aux), grads = jax.jit(jax.value_and_grad(g_objective, has_aux=True))(state.g_params)
    g_params, g_opt_state = _adam(config.optim, state.g_params, grads, state.g_opt_state)
    decay = config.optim.ema_decay
    ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state.ema_params, g_params)
    metrics.update(aux, g_loss=g_loss, skipped=0.0)
    new = state.replace(
        step=jnp.int32(step + 1),
        g_params=g_params,
        d_params=d_params,
        g_opt_state=g_opt_state,
        d_opt_state=d_opt_state,
        ema_params=ema,
        skips=jnp.int32(0),
    )
    return new, metrics


# ----------------------------------------------------------------------------- comparison


def _assert_state_close(got, want, before):
    """Every leaf: step and skips exactly; arrays within 1e-3 of the leaf's change in this step
    (plus float32 round-off of its values), so that a wrong change cannot hide in the values."""
    got, want, before = jax.device_get((got, want, before))
    got_leaves = jax.tree_util.tree_flatten_with_path(got.replace(frozen={}))[0]
    want_leaves, treedef = jax.tree.flatten(want.replace(frozen={}))
    before_leaves = jax.tree.leaves(before.replace(frozen={}))
    assert jax.tree.structure(got.replace(frozen={})) == treedef
    assert len(got_leaves) == len(want_leaves) == len(before_leaves) > 10
    for (path, g), w, b in zip(got_leaves, want_leaves, before_leaves):
        g, w, b = np.asarray(g), np.asarray(w), np.asarray(b)
        name = jax.tree_util.keystr(path)
        if g.dtype.kind == "i":
            np.testing.assert_array_equal(g, w, err_msg=name)
            continue
        change = float(np.abs(w - b).max()) if w.size else 0.0
        tol = 1e-3 * change + 1e-6 * float(np.abs(w).max() if w.size else 0.0) + 1e-12
        err = float(np.abs(g - w).max()) if w.size else 0.0
        assert err <= tol, f"{name}: max error {err:.3g} > {tol:.3g} (change {change:.3g})"


def _assert_metrics_close(got, want):
    got = jax.device_get(got)
    assert set(want) <= set(got), (sorted(want), sorted(got))
    for k, v in want.items():
        np.testing.assert_allclose(float(got[k]), float(v), rtol=2e-5, atol=1e-9, err_msg=k)


def _run(config, state, batch, key, moments):
    """The package's step, jitted as the loop does (static ``moments``, no warm-up)."""
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    step = jax.jit(train_step.make_train_step(config, models, optimizers), static_argnums=(3, 4))
    return step(jax.tree.map(jnp.copy, state), batch, key, moments, False)


def _setup(config, frozen=None, seed=0):
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    state = train_state.init_state(config, models, optimizers, jax.random.key(seed), frozen)
    batch = {k: jnp.asarray(v) for k, v in synthetic_batch().items()}
    return models, state, batch


def _check_steps(config, frozen=None, steps=(True,)):
    """Run ``len(steps)`` steps (``moments`` each), each checked against the reference from the
    package's previous state."""
    models, state, batch = _setup(config, frozen)
    key = jax.random.key(7)
    for moments in steps:
        assert train_step.is_moment_step(config, int(state.step)) == moments
        want, want_metrics = _reference_step(config, models, state, batch, key, moments)
        got, got_metrics = _run(config, state, batch, key, moments)
        _assert_metrics_close(got_metrics, want_metrics)
        _assert_state_close(got, want, state)
        if not moments and config.mode == "gan":
            assert float(got_metrics["fm"]) == 0.0
        state = got
    return got_metrics


# ----------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_gan_steps_with_fm_equal_the_papers_equations():
    """Step 0 (a moment step: FM on, fm_every 2) and step 1 (no FM), lambda_C and the learning
    rate at their step, Adam from a fresh and a used state, EMA."""
    config = _config()
    assert config.loss.adversarial_weight == ADVERSARIAL_WEIGHT
    metrics = _check_steps(config, steps=(True, False))
    assert float(metrics["lambda_c"]) > config.loss.consistency_min  # step 1: moved


def test_regression_step_equals_mse_and_adam():
    config = _config("regression")
    _check_steps(config, steps=(False, False))


@pytest.fixture(scope="module")
def frozen_models(tmp_path_factory):
    """A tiny random MMSE generator export and random VGG19 weights, as files."""
    config = _config()
    path = tmp_path_factory.mktemp("frozen")
    kwargs = train_state.generator_kwargs(config)
    mmse = export.save(
        path / "mmse", kwargs, random_params(Generator(**kwargs), seed=3, scale=0.05)
    )
    init = vgg.VGG19Features().init(jax.random.key(5), jnp.zeros((1, 32, 32, 3)))["params"]
    vgg.save_vgg19(jax.device_get(init), path / "vgg19.npz")
    return str(mmse), str(path / "vgg19.npz")


@pytest.mark.slow
def test_gan_step_with_sm_and_perceptual_on_frozen_models(frozen_models):
    config = _config()
    config.loss.sm_weight, config.loss.sm_mmse_export = 3.0, frozen_models[0]
    config.loss.perceptual_weight, config.loss.perceptual_vgg_path = 0.05, frozen_models[1]
    frozen = train_state.load_frozen(config)
    metrics = _check_steps(config, frozen, steps=(True,))
    assert float(metrics["sm"]) > 0 and float(metrics["perceptual"]) > 0


def test_critic_update_does_not_differentiate_through_the_fake():
    """The critic trains on x_hat as a constant: its update has no derivative w.r.t. G."""
    config = _config()
    models, state, batch = _setup(config)
    _, d_tx = train_state.make_optimizers(config)

    def new_critic_sum(g_params):
        d_params, _, _, _ = train_step.critic_update(
            state.replace(g_params=g_params),
            batch,
            jax.random.key(3),
            generator=models[0],
            critic=models[1],
            tx=d_tx,
            r1_weight=1.0,
        )
        return sum(jnp.sum(p) for p in jax.tree.leaves(d_params))

    grads = jax.jit(jax.grad(new_critic_sum))(state.g_params)
    assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(grads))
