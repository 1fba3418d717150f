"""Learning-rate and loss-weight schedules (appendix A: cosine annealing; lambda_C increase).

Each function returns an ``optax.Schedule``: ``step (int or int array) -> float32 value``,
traceable under ``jax.jit``.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax


def cosine_lr(init_value: float, final_value: float, steps: int) -> optax.Schedule:
    """Cosine annealing from ``init_value`` at step 0 to ``final_value`` at ``steps``.

    ``lr(t) = final + (init - final) * (1 + cos(pi * min(t, T) / T)) / 2`` (PyTorch's
    ``CosineAnnealingLR`` with ``eta_min=final`` over one half period, held at ``final`` after
    T). The paper: 1e-4 -> 1e-7 (FFHQ) or 1e-6 (general content) over T = 400k steps.

    Args:
        init_value: learning rate at step 0 (> 0).
        final_value: learning rate from step ``steps`` on (>= 0).
        steps: T, number of annealing steps (> 0).
    """
    if init_value <= 0 or final_value < 0 or steps <= 0:
        raise ValueError(
            f"cosine_lr({init_value}, {final_value}, {steps}): need init > 0, final >= 0, steps > 0"
        )
    return optax.cosine_decay_schedule(init_value, steps, alpha=final_value / init_value)


def cosine_increase(min_value: float, max_value: float, steps: int) -> optax.Schedule:
    """Cosine increase of a loss weight from ``min_value`` to ``max_value`` (lambda_C).

    ``lambda(t) = min + (max - min) * (1 + cos(pi * (1 + t / T))) / 2`` for ``0 <= t <= T``,
    held at ``max`` after T (and at ``min`` before 0). The paper: lambda_C 0.1 -> 10 (FFHQ
    "Ours") and 1 -> 1e3 (general content), over the 400k training steps.

    Args:
        min_value: value at step 0.
        max_value: value from step ``steps`` on.
        steps: T (> 0).
    """
    if steps <= 0:
        raise ValueError(f"cosine_increase: steps must be > 0, got {steps}")

    def schedule(count):
        t = jnp.clip(jnp.asarray(count, jnp.float32), 0.0, steps) / steps
        return min_value + 0.5 * (max_value - min_value) * (1.0 + jnp.cos(jnp.pi * (1.0 + t)))

    return schedule


def two_phase_cosine_lr(
    boundary: int, first_init: float, init_value: float, final_value: float, steps: int
) -> optax.Schedule:
    """Two cosine annealings: ``first_init -> final`` over steps ``[0, boundary)``, then
    ``init_value -> final`` over ``[boundary, steps)`` (e.g. a regression warm-up, then the GAN).

    Args:
        boundary: first step of the second phase (0 < boundary < steps).
        first_init: learning rate at step 0.
        init_value: learning rate at step ``boundary``.
        final_value: learning rate at the end of each phase.
        steps: total steps T.
    """
    if not 0 < boundary < steps:
        raise ValueError(f"two_phase_cosine_lr: need 0 < boundary < steps, got {boundary}, {steps}")
    return optax.join_schedules(
        [
            cosine_lr(first_init, final_value, boundary),
            cosine_lr(init_value, final_value, steps - boundary),
        ],
        [boundary],
    )
