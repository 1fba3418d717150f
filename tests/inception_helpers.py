"""Random FID Inception weights for tests (no weights can be downloaded)."""

import numpy as np

from jpeg_jax.models import inception
from jpeg_jax.models.convert_inception import save_variables


def save_random_inception(path, seed: int = 0) -> str:
    """Write random weights whose pool3 features still differ between images (He-scaled
    kernels, BatchNorm statistics near the identity) and return the path."""
    rng = np.random.default_rng(seed)
    weights = {}
    for key, shape in inception.variable_shapes().items():
        if key.endswith("kernel"):
            weights[key] = rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[:-1]))
        elif key.endswith("/var") or key.endswith("scale"):
            weights[key] = rng.uniform(0.8, 1.2, shape)
        else:
            weights[key] = 0.05 * rng.standard_normal(shape)
    save_variables(weights, path)
    return str(path)
