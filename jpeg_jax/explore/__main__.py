"""``python -m jpeg_jax.explore`` = ``jpeg-jax-explore``."""

import sys

from jpeg_jax.explore.server import main

sys.exit(main())
