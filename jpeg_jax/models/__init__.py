"""Flax models: the RRDB generator with noise injection and FiLM, and the conditional critic."""

from jpeg_jax.models.critic import Critic
from jpeg_jax.models.generator import Generator, abstract_params, resolve_dtypes

__all__ = ["Critic", "Generator", "abstract_params", "resolve_dtypes"]
