"""Random generator weights for tests, drawn with NumPy on ``eval_shape``'s tree.

Compiling ``Generator.init`` would cost most of a test file's time on 2 CPU cores.
"""

import jax
import numpy as np

from jpeg_jax.models import abstract_params


def random_params(model, *, scale: float = 0.1, seed: int = 0):
    """N(0, scale^2) weights with noise scales around 1: FiLM is not the identity and samples
    vary visibly."""
    shapes = abstract_params(model)
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree.flatten_with_path(shapes)
    values = [
        float("noise_scale" in jax.tree_util.keystr(path)) + scale * rng.standard_normal(s.shape)
        for path, s in leaves
    ]
    return jax.tree.unflatten(treedef, [np.asarray(v, np.float32) for v in values])
