"""One training step (critic update, generator update, EMA) and its data-parallel compilation.

The step is built from module-level pieces, each a function of explicit arguments that can be
checked on its own against the paper's equations:

- :func:`critic_loss` (Eq. 9) and :func:`critic_update`;
- :func:`generator_loss` (Eq. 10 with the appendix's FM, SM and P terms), with
  :func:`moment_penalties` (Eqs. 14-16) and :func:`regression_loss` (the MMSE model's MSE);
- :func:`apply_update` (an optax update, skipped when not finite) and :func:`ema_update`;
- :func:`is_moment_step`: the one place that decides which steps add FM/SM;
  :func:`is_warmup_step` which are the regression warm-up's, :func:`trains_critic` in which
  the critic learns.

:func:`make_train_step` composes them into ``step(state, batch, key[, moments])``;
:func:`compile_step` jits it over a device mesh.

Batches: ``x``, ``y`` (B, H, W, 3) float32 in [0, 1] (target and its JPEG decode), ``qtables``
(B, 2, 8, 8) int32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jpeg_jax import jpeg, losses, schedules
from jpeg_jax.models import Critic, Generator
from jpeg_jax.train_state import TrainState, learning_rate

PyTree = Any
Array = jax.Array


# ----------------------------------------------------------------------------- pieces


def is_moment_step(config: ml_collections.ConfigDict, step) -> Any:
    """Whether ``step`` adds the moment penalties FM/SM: GAN mode, ``loss.fm_weight`` or
    ``loss.sm_weight`` > 0, and ``step % loss.fm_every == 0``.

    ``step`` is a Python int (the loop chooses a compiled variant: returns a bool) or a traced
    step (returns a traced bool, or False when moments are off altogether).
    """
    cl = config.loss
    if config.mode != "gan" or (cl.fm_weight <= 0 and cl.sm_weight <= 0):
        return False
    if isinstance(step, int):
        return step % cl.fm_every == 0 and not is_warmup_step(config, step)
    return (step % cl.fm_every == 0) & (step >= config.regression_warmup_steps)


def is_warmup_step(config: ml_collections.ConfigDict, step: int) -> bool:
    """Whether ``step`` (a Python int) is one of a GAN run's first ``regression_warmup_steps``
    steps: G trains on the MSE of its zero-noise output (:func:`regression_loss`)."""
    return config.mode == "gan" and step < config.regression_warmup_steps


def trains_critic(config: ml_collections.ConfigDict, step: int) -> bool:
    """Whether the critic learns at ``step`` (a Python int): every GAN step, and in the warm-up's
    last ``regression_warmup_critic_steps`` steps (on G's zero-noise output), so that it is no
    longer at chance when the GAN starts."""
    if config.mode != "gan":
        return False
    return step >= config.regression_warmup_steps - config.regression_warmup_critic_steps


def sample(generator: Generator, params: PyTree, y: Array, qtables: Array, key: Array) -> Array:
    """One restoration x̂ = G(y, z) per image, the noise z drawn from ``key``."""
    return generator.apply({"params": params}, y, qtables, rngs={"noise": key})


def critic_logits(critic: Critic, params: PyTree, x: Array, y: Array, qtables: Array) -> Array:
    """D(x, y): (B,) logits (the tables condition the critic only when it has FiLM)."""
    return critic.apply({"params": params}, x, y, qtables if critic.film else None)


def all_finite(*trees) -> Array:
    """True when every leaf of every tree is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(pred, new, old):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def apply_update(tx: optax.GradientTransformation, grads, opt_state, params, ok: Array):
    """``(params, opt_state)`` after one optax update, or unchanged where ``ok`` is False."""
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    return _select(ok, new_params, params), _select(ok, new_opt_state, opt_state)


def ema_update(ema_params: PyTree, params: PyTree, decay: float) -> PyTree:
    """``decay * ema + (1 - decay) * params`` leaf by leaf (the evaluated weights)."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def critic_loss(
    d_params: PyTree,
    *,
    critic: Critic,
    x: Array,
    y: Array,
    qtables: Array,
    fake: Array,
    r1_weight: float,
) -> tuple[Array, dict[str, Array]]:
    """The critic's loss, Eq. 9: non-saturating logistic loss of D(x, y) against D(x̂, y),
    plus ``r1_weight / 2 * mean ||grad_x D(x, y)||²`` on the real images.

    Returns:
      ``(loss, {"d_loss": logistic part, "r1": penalty})``.
    """
    critic_fn = lambda images, cond: critic_logits(critic, d_params, images, cond, qtables)
    r1, real_logits = losses.r1_penalty_and_logits(critic_fn, x, y, weight=r1_weight)
    adv = losses.critic_loss(real_logits, critic_fn(fake, y))
    return adv + r1, {"d_loss": adv, "r1": r1}


def critic_update(
    state: TrainState,
    batch: dict,
    key: Array,
    *,
    generator: Generator,
    critic: Critic,
    tx: optax.GradientTransformation,
    r1_weight: float,
    fake: Array | None = None,
) -> tuple[PyTree, PyTree, Array, dict[str, Array]]:
    """One critic step on a fresh sample x̂ = G(y, z(key)) (no gradient to G), or on ``fake``
    when given (the regression warm-up passes its zero-noise output G(y, 0)).

    Returns:
      ``(d_params, d_opt_state, ok, aux)``; unchanged params and state when not ``ok``
      (non-finite loss or gradient).
    """
    x, y, qt = batch["x"], batch["y"], batch["qtables"]
    if fake is None:
        fake = sample(generator, state.g_params, y, qt, key)
    fake = jax.lax.stop_gradient(fake)
    grad_fn = jax.value_and_grad(critic_loss, has_aux=True)
    (loss, aux), grads = grad_fn(
        state.d_params, critic=critic, x=x, y=y, qtables=qt, fake=fake, r1_weight=r1_weight
    )
    ok = all_finite(loss, grads)
    d_params, d_opt_state = apply_update(tx, grads, state.d_opt_state, state.d_params, ok)
    return d_params, d_opt_state, ok, aux


def moment_penalties(
    g_params: PyTree,
    batch: dict,
    key: Array,
    *,
    generator: Generator,
    mmse_params: PyTree | None,
    num_images: int,
    num_samples: int,
) -> tuple[Array, Array]:
    """FM and SM (appendix C) on ``num_samples`` samples of the first ``num_images`` images.

    Sample i uses ``jax.random.split(key, num_samples)[i]`` (vmapped). SM compares the samples'
    per-pixel spread with the frozen MMSE model's error; it is 0 without ``mmse_params``.

    Returns:
      ``(fm, sm)`` scalars.
    """
    n = min(num_images, batch["x"].shape[0])
    x, y, qt = batch["x"][:n], batch["y"][:n], batch["qtables"][:n]
    apply = functools.partial(sample, generator)
    samples = losses.draw_samples(apply, g_params, y, qt, key, num_samples)
    fm = losses.first_moment_penalty(x, samples)
    sm = jnp.zeros(())
    if mmse_params is not None:
        x_mmse = generator.apply({"params": mmse_params}, y, qt, deterministic=True)
        sm = losses.second_moment_penalty(x, samples, x_mmse)
    return fm, sm


def generator_loss(
    g_params: PyTree,
    *,
    batch: dict,
    generator: Generator,
    critic: Critic,
    d_params: PyTree,
    frozen: dict,
    key: Array,
    moment_key: Array,
    lambda_c: Array,
    moments: Any,
    loss: ml_collections.ConfigDict,
    subsampling: str,
) -> tuple[Array, dict[str, Array]]:
    """The generator's loss, Eq. 10 with the appendix's extra terms, for x̂ = G(y, z(key)):

    ``adversarial_weight * V + lambda_c * C + fm_weight * FM + sm_weight * SM
    + perceptual_weight * P + mse_weight * MSE``

    V: non-saturating loss of D(x̂, y) (critic ``d_params``); C: consistency of x̂ with the
    coefficients ``jpeg.encode(x)`` (bit-exact with the libjpeg file the pipeline made from x);
    FM/SM: :func:`moment_penalties` with ``moment_key`` when ``moments`` (a bool picks the
    branch while tracing; a traced bool uses ``lax.cond``); P needs ``frozen["vgg"]``, SM
    ``frozen["mmse"]``.

    Args:
      loss: the config's ``loss`` section (weights, FM sizes, ``consistency_exact``).
      lambda_c: λ_C at this step.

    Returns:
      ``(total, aux)``, aux holding each term before weighting.
    """
    x, y, qt = batch["x"], batch["y"], batch["qtables"]
    x_hat = sample(generator, g_params, y, qt, key)
    adv = losses.generator_adversarial_loss(critic_logits(critic, d_params, x_hat, y, qt))
    target = jpeg.encode(x, qt, subsampling=subsampling)
    cons = losses.consistency_penalty(
        x_hat, target, qt, subsampling=subsampling, exact=loss.consistency_exact
    )
    compute = lambda: moment_penalties(
        g_params,
        batch,
        moment_key,
        generator=generator,
        mmse_params=frozen.get("mmse"),
        num_images=loss.fm_num_images,
        num_samples=loss.fm_num_samples,
    )
    zero = lambda: (jnp.zeros(()), jnp.zeros(()))
    if isinstance(moments, bool):
        fm, sm = compute() if moments else zero()
    else:
        fm, sm = jax.lax.cond(moments, compute, zero)
    total = loss.adversarial_weight * adv + lambda_c * cons
    total += loss.fm_weight * fm + loss.sm_weight * sm
    aux = {"g_adv": adv, "consistency": cons, "fm": fm, "sm": sm}
    if loss.perceptual_weight > 0:
        aux["perceptual"] = losses.perceptual_loss(frozen["vgg"], x, x_hat)
        total += loss.perceptual_weight * aux["perceptual"]
    if loss.mse_weight > 0:
        aux["mse"] = losses.mse_loss(x, x_hat)
        total += loss.mse_weight * aux["mse"]
    return total, aux


def regression_loss(
    g_params: PyTree, *, batch: dict, generator: Generator
) -> tuple[Array, dict[str, Array]]:
    """The MMSE model's loss: MSE of the deterministic (zero-noise) output G(y, 0) against x.

    Returns:
      ``(mse, {"mse": mse, "x_hat": G(y, 0)})``: the output, for a critic that learns on it.
    """
    x_hat = generator.apply({"params": g_params}, batch["y"], batch["qtables"], deterministic=True)
    mse = losses.mse_loss(batch["x"], x_hat)
    return mse, {"mse": mse, "x_hat": x_hat}


def generator_update(
    state: TrainState, loss_fn: Callable, tx: optax.GradientTransformation
) -> tuple[PyTree, PyTree, Array, Array, dict[str, Array]]:
    """One generator step on ``loss_fn(g_params) -> (loss, aux)``.

    Returns:
      ``(g_params, g_opt_state, ok, loss, aux)``; unchanged params and state when not ``ok``.
    """
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g_params)
    ok = all_finite(loss, grads)
    g_params, g_opt_state = apply_update(tx, grads, state.g_opt_state, state.g_params, ok)
    return g_params, g_opt_state, ok, loss, aux


# ----------------------------------------------------------------------------- the step


def make_train_step(config: ml_collections.ConfigDict, models, optimizers) -> Callable:
    """Build ``step(state, batch, key, moments=None) -> (state, metrics)`` for ``config.mode``.

    GAN: :func:`critic_update`, then the generator on :func:`generator_loss`, then
    :func:`ema_update`. Regression: the generator on :func:`regression_loss`, then EMA. Per-step
    keys: ``fold_in(key, state.step)`` split into critic, generator and moment keys.

    ``moments`` (static; pass it positionally to :func:`compile_step`'s step): whether this
    step adds FM/SM; the loop passes :func:`is_moment_step` (two compiled variants). None
    decides inside the step with ``lax.cond`` (correct, but slow on XLA:CPU; see
    ``benchmarks/RESULTS.md``). ``warmup`` (static, positional after ``moments``): a regression
    step in GAN mode, :func:`is_warmup_step` (the loop's first ``regression_warmup_steps``).
    ``critic_learns`` (static, after ``warmup``; :func:`trains_critic`): whether a warm-up step
    also trains the critic, on the same zero-noise output G(y, 0) (a GAN step always does).

    A step where the critic's or the generator's loss or gradient is not finite is skipped as a
    whole (both networks' params and optimizer states and the EMA unchanged;
    ``metrics["skipped"] = 1``; ``state.skips`` counts consecutive skips).
    """
    generator, critic = models
    g_tx, d_tx = optimizers
    cl = config.loss
    lambda_c = schedules.cosine_increase(
        cl.consistency_min, cl.consistency_max, cl.consistency_steps
    )
    lr = learning_rate(config)
    regression = config.mode == "regression"

    def step(
        state: TrainState,
        batch: dict,
        key: Array,
        moments: bool | None = None,
        warmup: bool = False,
        critic_learns: bool = True,
    ):
        d_key, g_key, moment_key = jax.random.split(jax.random.fold_in(key, state.step), 3)
        moments = is_moment_step(config, state.step) if moments is None else moments
        metrics = {}
        d_params, d_opt_state, d_ok = state.d_params, state.d_opt_state, jnp.array(True)
        fake = None
        if regression or warmup:  # G on its MSE; the critic (warm-up) learns on the same G(y, 0)
            loss_fn = functools.partial(regression_loss, batch=batch, generator=generator)
            g_params, g_opt_state, g_ok, g_loss, g_aux = generator_update(state, loss_fn, g_tx)
            fake = jax.lax.stop_gradient(g_aux.pop("x_hat"))
        if not regression and (critic_learns or not warmup):
            d_params, d_opt_state, d_ok, d_aux = critic_update(
                state,
                batch,
                d_key,
                generator=generator,
                critic=critic,
                tx=d_tx,
                r1_weight=cl.r1_weight,
                fake=fake,
            )
            metrics.update(d_aux)
        if not (regression or warmup):  # G against the critic just updated
            loss_fn = functools.partial(
                generator_loss,
                batch=batch,
                generator=generator,
                critic=critic,
                d_params=d_params,
                frozen=state.frozen,
                key=g_key,
                moment_key=moment_key,
                lambda_c=lambda_c(state.step),
                loss=cl,
                subsampling=config.data.subsampling,
                moments=moments,
            )
            g_params, g_opt_state, g_ok, g_loss, g_aux = generator_update(state, loss_fn, g_tx)
        ema = ema_update(state.ema_params, g_params, config.optim.ema_decay)
        # A step is skipped as a whole: a batch that breaks one loss (e.g. a NaN in x, which
        # the critic sees but C may not: its coefficients are cast to integers) updates nothing.
        ok = d_ok & g_ok
        new_state = state.replace(
            step=state.step + 1,
            g_params=_select(ok, g_params, state.g_params),
            d_params=_select(ok, d_params, state.d_params),
            g_opt_state=_select(ok, g_opt_state, state.g_opt_state),
            d_opt_state=_select(ok, d_opt_state, state.d_opt_state),
            ema_params=_select(ok, ema, state.ema_params),
            skips=jnp.where(ok, 0, state.skips + 1),
        )
        metrics.update(g_aux)
        metrics.update(
            g_loss=g_loss,
            lambda_c=lambda_c(state.step),
            lr=lr(state.step),
            skipped=1 - ok.astype(jnp.int32),
        )
        return new_state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    return step


# ----------------------------------------------------------------------------- sharding


def make_mesh(devices=None) -> Mesh:
    """A 1-D ``"data"`` mesh over all (global) devices."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def compile_step(step_fn, mesh: Mesh, state_example):
    """``jax.jit`` the step over ``mesh``: batch sharded on "data", state replicated, donated."""
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    state_sharding = jax.tree.map(lambda _: replicated, state_example)
    return jax.jit(
        step_fn,
        in_shardings=(state_sharding, batch_sharding, replicated),
        out_shardings=(state_sharding, replicated),
        static_argnums=(3, 4, 5),
        donate_argnums=0,
    )


def global_batch(mesh: Mesh, local_batch: dict) -> dict:
    """Assemble per-process numpy batches into global arrays sharded over ``"data"``."""
    sharding = NamedSharding(mesh, P("data"))
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
        if k in ("x", "y", "qtables")
    }


def replicate(mesh: Mesh, tree):
    """Place a pytree replicated on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def fetch(tree) -> PyTree:
    """The whole value of every (global) array of ``tree`` as numpy, on this host.

    A collective in a multi-process job (an all-gather of what is not replicated): call it on
    every process.
    """
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
