"""One training step (critic update, generator update, EMA) and its data-parallel compilation."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jpeg_jax import jpeg, losses, schedules
from jpeg_jax.train_state import TrainState, learning_rate


def _all_finite(*trees) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(pred, new, old):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _apply_update(tx, grads, opt_state, params, ok):
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    return _select(ok, new_params, params), _select(ok, new_opt_state, opt_state)


def make_train_step(config, models, optimizers) -> Callable:
    """Build ``step(state, batch, key) -> (state, metrics)`` for ``config.mode``.

    GAN mode (Eq. 9 then Eq. 10): the critic is updated on a fresh generator sample with the
    non-saturating loss + R1; then the generator on ``w_adv * adversarial + lambda_C(t) * C``
    (+ ``lambda_FM * FM`` and ``lambda_SM * SM`` every ``fm_every`` steps, on ``fm_num_samples``
    vmapped noise draws for the first ``fm_num_images`` images; + ``lambda_P * P``;
    + ``mse_weight * MSE``); then EMA. Regression mode: MSE of the deterministic (zero-noise)
    generator output. The true coefficients for C are ``jpeg.encode(x, qtables)``, which is
    bit-exact with the libjpeg file the input pipeline made from x.

    ``moments`` (static; pass it positionally to the compiled step) says whether this step
    computes FM/SM; the training loop passes ``step % fm_every == 0`` (two compiled variants).
    ``warmup`` (static, positional after ``moments``): a regression step in GAN mode (G on the
    MSE of its zero-noise output; the critic is updated on that output when
    ``config.regression_warmup_critic``, else not at all), the loop's first
    ``regression_warmup_steps`` steps.
    ``None`` decides inside the step with ``lax.cond``: correct, but on XLA:CPU the branch ran
    20x slower than the same code unconditioned (jax 0.10.2).

    An update whose loss or gradient is not finite is skipped (params, optimizer state and EMA
    unchanged; ``metrics["skipped"] = 1``; ``state.skips`` counts consecutive skips).

    Batch keys: ``x``, ``y`` (B, H, W, 3) float32 in [0, 1], ``qtables`` (B, 2, 8, 8) int32.
    """
    generator, critic = models
    g_tx, d_tx = optimizers
    cl = config.loss
    subsampling = config.data.subsampling
    lambda_c = schedules.cosine_increase(
        cl.consistency_min, cl.consistency_max, cl.consistency_steps
    )
    lr = learning_rate(config)
    regression = config.mode == "regression"

    def g_apply(params, y, qtables, key):
        return generator.apply({"params": params}, y, qtables, rngs={"noise": key})

    def d_apply(params, x, y, qtables):
        return critic.apply({"params": params}, x, y, qtables if critic.film else None)

    def critic_update(state, batch, key, warmup):
        x, y, qt = batch["x"], batch["y"], batch["qtables"]
        if warmup:  # what G is being trained to output in the warm-up
            fake = generator.apply({"params": state.g_params}, y, qt, deterministic=True)
        else:
            fake = g_apply(state.g_params, y, qt, key)
        fake = jax.lax.stop_gradient(fake)

        def loss_fn(d_params):
            critic_fn = lambda images, cond: d_apply(d_params, images, cond, qt)  # noqa: E731
            r1, real_logits = losses.r1_penalty_and_logits(critic_fn, x, y, weight=cl.r1_weight)
            adv = losses.critic_loss(real_logits, critic_fn(fake, y))
            return adv + r1, {"d_loss": adv, "r1": r1}

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d_params)
        return loss, aux, grads

    def moment_terms(g_params, frozen, batch, key):
        n = min(cl.fm_num_images, batch["x"].shape[0])
        x, y, qt = batch["x"][:n], batch["y"][:n], batch["qtables"][:n]
        samples = losses.draw_samples(g_apply, g_params, y, qt, key, cl.fm_num_samples)
        fm = losses.first_moment_penalty(x, samples)
        sm = jnp.zeros(())
        if "mmse" in frozen:
            x_mmse = generator.apply({"params": frozen["mmse"]}, y, qt, deterministic=True)
            sm = losses.second_moment_penalty(x, samples, x_mmse)
        return fm, sm

    def generator_loss(g_params, state, d_params, batch, keys, step, moments, warmup):
        x, y, qt = batch["x"], batch["y"], batch["qtables"]
        if regression or warmup:
            x_hat = generator.apply({"params": g_params}, y, qt, deterministic=True)
            mse = losses.mse_loss(x, x_hat)
            return mse, {"mse": mse}
        x_hat = g_apply(g_params, y, qt, keys[0])
        adv = losses.generator_adversarial_loss(d_apply(d_params, x_hat, y, qt))
        target = jpeg.encode(x, qt, subsampling=subsampling)
        cons = losses.consistency_penalty(
            x_hat, target, qt, subsampling=subsampling, exact=cl.consistency_exact
        )
        compute = lambda: moment_terms(g_params, state.frozen, batch, keys[1])  # noqa: E731
        zero = lambda: (jnp.zeros(()), jnp.zeros(()))  # noqa: E731
        if moments is None:
            fm, sm = jax.lax.cond(step % cl.fm_every == 0, compute, zero)
        else:
            fm, sm = compute() if moments else zero()
        total = cl.adversarial_weight * adv + lambda_c(step) * cons
        total += cl.fm_weight * fm + cl.sm_weight * sm
        aux = {"g_adv": adv, "consistency": cons, "fm": fm, "sm": sm}
        if cl.perceptual_weight > 0:
            aux["perceptual"] = losses.perceptual_loss(state.frozen["vgg"], x, x_hat)
            total += cl.perceptual_weight * aux["perceptual"]
        if cl.mse_weight > 0:
            aux["mse"] = losses.mse_loss(x, x_hat)
            total += cl.mse_weight * aux["mse"]
        return total, aux

    def step(state: TrainState, batch, key, moments: bool | None = None, warmup: bool = False):
        key = jax.random.fold_in(key, state.step)
        d_key, g_key, moment_key = jax.random.split(key, 3)
        metrics = {}
        d_params, d_opt_state, d_ok = state.d_params, state.d_opt_state, jnp.array(True)
        if not regression and (not warmup or config.regression_warmup_critic):
            d_loss, d_aux, d_grads = critic_update(state, batch, d_key, warmup)
            d_ok = _all_finite(d_loss, d_grads)
            d_params, d_opt_state = _apply_update(
                d_tx, d_grads, state.d_opt_state, state.d_params, d_ok
            )
            metrics.update(d_aux)
        (g_loss, g_aux), g_grads = jax.value_and_grad(generator_loss, has_aux=True)(
            state.g_params, state, d_params, batch, (g_key, moment_key), state.step, moments, warmup
        )
        g_ok = _all_finite(g_loss, g_grads)
        g_params, g_opt_state = _apply_update(
            g_tx, g_grads, state.g_opt_state, state.g_params, g_ok
        )
        decay = config.optim.ema_decay
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, g_params)
        ok = d_ok & g_ok
        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            d_params=d_params,
            g_opt_state=g_opt_state,
            d_opt_state=d_opt_state,
            ema_params=_select(g_ok, ema, state.ema_params),
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
        static_argnums=(3, 4),
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
