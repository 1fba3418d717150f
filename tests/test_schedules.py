"""Schedules against their closed forms (cosine lr annealing, cosine lambda_C increase)."""

import math

import jax
import numpy as np
import pytest

from jpeg_jax import schedules


@pytest.mark.parametrize(("init", "final", "steps"), [(1e-4, 1e-7, 400_000), (1e-4, 1e-6, 1000)])
def test_cosine_lr_values(init, final, steps):
    lr = schedules.cosine_lr(init, final, steps)
    np.testing.assert_allclose(lr(0), init, rtol=1e-6)
    np.testing.assert_allclose(lr(steps // 2), (init + final) / 2, rtol=1e-6)
    np.testing.assert_allclose(lr(steps), final, rtol=1e-5)
    np.testing.assert_allclose(lr(3 * steps), final, rtol=1e-5)  # held after T


def test_cosine_lr_matches_cosine_annealing_formula():
    # PyTorch's CosineAnnealingLR closed form: eta_min + (eta_0 - eta_min)(1 + cos(pi t / T)) / 2.
    init, final, steps = 1e-4, 1e-7, 100
    lr = schedules.cosine_lr(init, final, steps)
    for t in (0, 1, 13, 50, 77, 99, 100):
        ref = final + (init - final) * (1 + math.cos(math.pi * t / steps)) / 2
        # float32: absolute error ~ eps * init where the cosine term cancels near T.
        np.testing.assert_allclose(lr(t), ref, rtol=1e-5, atol=1e-6 * init)


@pytest.mark.parametrize(("lo", "hi"), [(0.1, 10.0), (1.0, 1e3)])
def test_cosine_increase_values(lo, hi):
    steps = 400_000
    lam = schedules.cosine_increase(lo, hi, steps)
    np.testing.assert_allclose(lam(0), lo, rtol=1e-6)
    np.testing.assert_allclose(lam(steps // 2), (lo + hi) / 2, rtol=1e-6)
    np.testing.assert_allclose(lam(steps), hi, rtol=1e-6)
    np.testing.assert_allclose(lam(steps + 1), hi, rtol=1e-6)
    np.testing.assert_allclose(lam(10 * steps), hi, rtol=1e-6)
    t = steps // 4  # the NOTES formula, lambda(t) = min + (max - min)(1 + cos(pi (1 + t/T))) / 2
    ref = lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * (1 + t / steps)))
    np.testing.assert_allclose(lam(t), ref, rtol=1e-6)


def test_cosine_increase_is_monotone_and_jittable():
    lam = schedules.cosine_increase(0.1, 10.0, 1000)
    values = np.asarray(jax.jit(jax.vmap(lam))(np.arange(0, 1201, 7)))
    assert np.all(np.diff(values) >= 0)
    np.testing.assert_allclose(jax.jit(lam)(np.int32(1000)), 10.0, rtol=1e-6)


def test_two_phase_cosine_lr_restarts_at_the_boundary():
    first, init, final, boundary, steps = 2e-3, 5e-4, 1e-5, 100, 300

    def closed_form(t):
        if t < boundary:
            return final + (first - final) * (1 + math.cos(math.pi * t / boundary)) / 2
        u = min(t - boundary, steps - boundary)
        return final + (init - final) * (1 + math.cos(math.pi * u / (steps - boundary))) / 2

    lr = schedules.two_phase_cosine_lr(boundary, first, init, final, steps)
    for t in (0, 1, 37, 99, 100, 101, 200, 299, 300, 500):
        np.testing.assert_allclose(lr(t), closed_form(t), rtol=1e-5, atol=1e-6 * first)
    with pytest.raises(ValueError):
        schedules.two_phase_cosine_lr(300, first, init, final, steps)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        schedules.cosine_lr(0.0, 1e-7, 10)
    with pytest.raises(ValueError):
        schedules.cosine_increase(0.1, 10.0, 0)
