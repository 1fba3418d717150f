"""Train state, models and optimizers of the posterior-sampling GAN (and of regression models)."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jpeg_jax import export, platform, schedules
from jpeg_jax.models import Critic, Generator, convert, resolve_dtypes

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Everything a training step updates, plus frozen helper models.

    Attributes:
      step: number of completed steps.
      g_params, d_params: generator and critic parameters (critic empty in regression mode).
      g_opt_state, d_opt_state: their optax states.
      ema_params: exponential moving average of ``g_params`` (the evaluated weights).
      skips: consecutive steps skipped because of a non-finite loss or gradient.
      frozen: frozen models' params ("mmse" for SM, "vgg" for P); not checkpointed.
    """

    step: jax.Array
    g_params: PyTree
    d_params: PyTree
    g_opt_state: PyTree
    d_opt_state: PyTree
    ema_params: PyTree
    skips: jax.Array
    frozen: dict = flax.struct.field(default_factory=dict)


def generator_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """``Generator`` attributes from ``config.model.generator``: dtype names resolved, platform
    choices ("auto") made for this backend by :func:`jpeg_jax.platform.resolve_generator`."""
    return resolve_dtypes(platform.resolve_generator(config.model.generator.to_dict()))


def make_models(config: ml_collections.ConfigDict) -> tuple[Generator, Critic]:
    """The generator and critic a config describes."""
    c = config.model.critic
    critic = Critic(
        widths=tuple(c.widths),
        blocks=tuple(c.blocks),
        film=c.film,
        dtype=resolve_dtypes(config.model.generator.to_dict())["dtype"],
    )
    return Generator(**generator_kwargs(config)), critic


def learning_rate(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Cosine ``lr_init -> lr_final`` over ``lr_steps``; with a regression warm-up and
    ``optim.warmup_lr_init > 0``, the warm-up anneals its own cosine from ``warmup_lr_init`` and
    the GAN's starts afresh at ``lr_init`` (:func:`schedules.two_phase_cosine_lr`)."""
    o, warmup = config.optim, config.regression_warmup_steps
    if config.mode == "gan" and warmup > 0 and o.warmup_lr_init > 0:
        return schedules.two_phase_cosine_lr(
            warmup, o.warmup_lr_init, o.lr_init, o.lr_final, o.lr_steps
        )
    return schedules.cosine_lr(o.lr_init, o.lr_final, o.lr_steps)


def make_optimizers(config: ml_collections.ConfigDict):
    """Adam (betas from the config; paper: 0, 0.99) on :func:`learning_rate`, for G and D."""
    o = config.optim
    lr = learning_rate(config)
    make = lambda: optax.adam(lr, b1=o.b1, b2=o.b2)  # noqa: E731
    return make(), make()


def _dummy_batch(config, batch: int = 1):
    p = config.data.patch_size
    images = jnp.zeros((batch, p, p, 3), jnp.float32)
    return images, jnp.ones((batch, 2, 8, 8), jnp.int32)


def load_frozen(config: ml_collections.ConfigDict) -> dict:
    """Frozen models the losses need: the MMSE export (SM) and VGG19 (P)."""
    frozen = {}
    if config.loss.sm_weight > 0:
        if not config.loss.sm_mmse_export:
            raise ValueError("loss.sm_weight > 0 needs loss.sm_mmse_export (a regression export)")
        mmse = export.load(config.loss.sm_mmse_export).params
        frozen["mmse"] = convert.to_stacking(mmse, scan=config.model.generator.scan)
    if config.loss.perceptual_weight > 0:
        from jpeg_jax.models.vgg import load_vgg19

        frozen["vgg"] = load_vgg19(config.loss.perceptual_vgg_path)
    return frozen


def init_state(config, models, optimizers, key: jax.Array, frozen: dict | None = None):
    """Fresh state (generator optionally initialised from ``config.init_from_export``)."""
    generator, critic = models
    g_tx, d_tx = optimizers

    @jax.jit  # one compiled program (cached across launches), not one per initialiser
    def init_params(key):
        g_key, d_key, noise_key = jax.random.split(key, 3)
        y, qtables = _dummy_batch(config)
        g_params = generator.init({"params": g_key, "noise": noise_key}, y, qtables)["params"]
        d_params = critic.init(d_key, y, y, qtables)["params"] if config.mode == "gan" else {}
        return g_params, d_params

    g_params, d_params = init_params(key)
    if config.init_from_export:
        loaded = convert.to_stacking(
            export.load(config.init_from_export).params, scan=generator.scan
        )
        same = jax.tree.structure(loaded) == jax.tree.structure(g_params) and all(
            jnp.shape(a) == jnp.shape(b)
            for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(g_params))
        )
        if not same:  # the tree, or a width (num_feat, num_grow_ch)
            raise ValueError(f"{config.init_from_export}: generator architecture differs")
        g_params = jax.tree.map(jnp.asarray, loaded)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        d_params=d_params,
        g_opt_state=g_tx.init(g_params),
        d_opt_state=d_tx.init(d_params),
        ema_params=jax.tree.map(jnp.copy, g_params),  # distinct buffers: the state is donated
        skips=jnp.zeros((), jnp.int32),
        frozen=frozen or {},
    )
