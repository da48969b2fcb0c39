"""The discrete-latent example runs end to end in its --quick mode."""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "discrete_latent.py"


@pytest.mark.slow
def test_discrete_latent_example_quick():
    spec = importlib.util.spec_from_file_location("discrete_latent", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--quick"])
    assert set(out) == set(mod.CONFIGS)
    assert all(np.isfinite(v) for v in out.values())
