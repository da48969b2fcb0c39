"""The eight schools model (Rubin 1981), non-centered: provi's built-in example.

The model is the one of the posteriordb suite (`provi.examples.posteriordb`); the data ship here.
"""

import numpy as np

from provi.examples.posteriordb import eight_schools_noncentered as model

__all__ = ["model", "DATA"]

DATA = {
    "J": 8,
    "y": np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], np.float32),
    "sigma": np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], np.float32),
}
