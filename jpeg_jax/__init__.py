"""jpeg_jax: stochastic JPEG decoding by posterior sampling, in JAX/Flax."""

__version__ = "0.1.0"
