"""Fast checks of the posteriordb NumPyro models, loaders and reference mappings (no MCMC)."""

import functools
import pathlib
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import Predictive, init_to_uniform
from numpyro.infer.util import log_density

from provi.examples import posteriordb as pdb_module
from provi.examples.posteriordb import PACKAGED_ROOT, POSTERIORS, posteriordb_root
from provi.examples.posteriordb import load as _load


load = functools.cache(_load)  # Posterior objects are immutable; share them between tests


@functools.cache
def _draws(name):
    return load(name).reference_draws()


def _trace(p, seed=0):
    """Trace with latents drawn by init_to_uniform (flat priors cannot be sampled)."""
    model = handlers.substitute(
        handlers.seed(p.model, jax.random.PRNGKey(seed)), substitute_fn=init_to_uniform
    )
    return handlers.trace(model).get_trace(*p.args, **p.kwargs)


def _latents(p, n=3):
    """``n`` stacked draws of every unobserved sample site."""
    traces = [_trace(p, seed) for seed in range(n)]
    names = [k for k, s in traces[0].items() if s["type"] == "sample" and not s["is_observed"]]
    return {k: jnp.stack([t[k]["value"] for t in traces]) for k in names}


def _unflatten(flat):
    """``{'beta[2]': x, 'sigma': y}`` -> ``{'beta': [.., x, ..], 'sigma': y}`` (1-D only)."""
    sites = {}
    for key, value in flat.items():
        m = re.fullmatch(r"(\w+)\[(\d+)\]", key)
        if m:
            sites.setdefault(m[1], {})[int(m[2])] = value
        else:
            sites[key] = value
    return {
        k: jnp.stack([v[i] for i in sorted(v)], axis=-1) if isinstance(v, dict) else jnp.asarray(v)
        for k, v in sites.items()
    }


def _site_values(p, flat):
    """Model site values (float32) from flat reference quantities."""
    sites = {k: v.astype(jnp.float32) for k, v in _unflatten(flat).items()}
    if p.name == "eight_schools-eight_schools_noncentered":
        theta = sites.pop("theta")
        sites["theta_trans"] = (theta - sites["mu"][..., None]) / sites["tau"][..., None]
    return sites


def test_posteriors_follow_readme_table():
    readme = (posteriordb_root() / "README.md").read_text()
    rows = re.findall(r"^\| ([\w-]+) \| \d+ \|", readme, flags=re.M)
    assert tuple(rows) == POSTERIORS
    assert all((posteriordb_root() / name / "model.stan").is_file() for name in POSTERIORS)


SHIPPED = ("data.json", "reference_summary.json", "info.json", "model.stan", "draws.json.gz")


def test_root_defaults_to_packaged_copy(monkeypatch, tmp_path):
    """Without $PROVI_POSTERIORDB the copy shipped inside the package is read, whatever the
    working directory (no search for a folder beside the checkout)."""
    monkeypatch.delenv("PROVI_POSTERIORDB", raising=False)
    monkeypatch.chdir(tmp_path)
    packaged = pathlib.Path(pdb_module.__file__).resolve().parent / "posteriordb_data"
    assert PACKAGED_ROOT == packaged
    assert posteriordb_root() == packaged
    assert load(POSTERIORS[0]).path == packaged / POSTERIORS[0]
    for name in POSTERIORS:
        assert all((packaged / name / f).is_file() for f in SHIPPED), name


def test_packaged_copy_keeps_its_notice():
    readme = (PACKAGED_ROOT / "README.md").read_text()
    license_ = (PACKAGED_ROOT / "LICENSE").read_text()
    assert "28f8d3d6e975315f42aa274a8399f21e07a43b30" in readme
    assert "github.com/stan-dev/posteriordb" in readme
    assert "BSD 3-Clause" in license_
    assert "Copyright (c) 2011-2024, Stan Developers and their Assignees" in license_


def test_root_from_env_var(monkeypatch, tmp_path):
    """$PROVI_POSTERIORDB overrides the packaged copy; a folder without draws loads, and asking
    it for draws names the missing file and the fix."""
    name = POSTERIORS[2]
    (tmp_path / name).mkdir()
    for f in SHIPPED[:-1]:  # no draws.json.gz
        shutil.copy(PACKAGED_ROOT / name / f, tmp_path / name / f)
    monkeypatch.setenv("PROVI_POSTERIORDB", str(tmp_path))
    assert posteriordb_root() == tmp_path
    p = _load(name)
    assert p.path == tmp_path / name
    assert p.reference_summary() == load(name).reference_summary()
    with pytest.raises(FileNotFoundError, match="PROVI_POSTERIORDB") as err:
        p.reference_draws()
    assert str(tmp_path / name / "draws.json.gz") in str(err.value)


def test_bad_env_var_raises(monkeypatch, tmp_path):
    monkeypatch.setenv("PROVI_POSTERIORDB", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="PROVI_POSTERIORDB"):
        posteriordb_root()
    with pytest.raises(FileNotFoundError):
        _load(POSTERIORS[0])


def test_unknown_name_raises():
    with pytest.raises(KeyError):
        _load("no-such-posterior")


@pytest.mark.parametrize("name", POSTERIORS)
def test_model_traces(name):
    p = load(name)
    tr = _trace(p)
    observed = [s for s in tr.values() if s["type"] == "sample" and s["is_observed"]]
    observed = [s for s in observed if not isinstance(s["fn"], dist.Unit)]  # not factors
    assert len(observed) == 1
    assert observed[0]["value"] is p.args[-1]  # observed data is the last positional arg
    for site in tr.values():
        if site["type"] == "sample":
            assert jnp.all(jnp.isfinite(site["fn"].log_prob(site["value"]))), site["name"]
        if site["type"] in ("sample", "deterministic"):
            assert site["value"].dtype == jnp.float32, site["name"]


@pytest.mark.parametrize("name", POSTERIORS)
def test_quantities_names_and_shapes(name):
    p = load(name)
    latents = _latents(p)
    predicted = Predictive(p.model, posterior_samples=latents)(
        jax.random.PRNGKey(1), *p.args, **p.kwargs
    )
    obs = {k for k, s in _trace(p).items() if s["type"] == "sample" and s["is_observed"]}
    samples = {**latents, **{k: v for k, v in predicted.items() if k not in obs}}
    q = p.quantities(samples)
    assert set(q) == set(p.reference_summary())
    assert all(v.shape == (3,) for v in q.values())
    if name == "eight_schools-eight_schools_noncentered":  # theta derived when not given
        q2 = p.quantities({k: v for k, v in samples.items() if k != "theta"})
        assert all(np.allclose(q[k], q2[k], rtol=1e-5, atol=1e-5) for k in q)


@pytest.mark.parametrize("name", POSTERIORS)
def test_reference_draws_match_summary(name):
    p = load(name)
    draws, ref = _draws(name), p.reference_summary()
    assert set(draws) == set(ref)
    for k, s in ref.items():
        assert set(s) == {"mean", "sd", "q5", "q50", "q95"}
        assert draws[k].shape == (10_000,)
        np.testing.assert_allclose(draws[k].mean(), s["mean"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(draws[k].std(ddof=1), s["sd"], rtol=1e-9)


@pytest.mark.parametrize("name", POSTERIORS)
def test_quantities_roundtrip_reference_draws(name):
    """Site arrays rebuilt from reference draws map back to the same flat names and values."""
    p = load(name)
    draws = _draws(name)
    q = p.quantities(_site_values(p, draws))
    for k, v in draws.items():
        np.testing.assert_allclose(q[k], v, rtol=1e-4, atol=1e-4 * np.std(v))


@pytest.mark.parametrize("name", POSTERIORS)
def test_log_density_at_reference_mean(name):
    p = load(name)
    ref = p.reference_summary()
    at = lambda shift: _site_values(p, {k: s["mean"] + shift * s["sd"] for k, s in ref.items()})
    lp_mean = log_density(p.model, p.args, p.kwargs, at(0.0))[0]
    lp_off = log_density(p.model, p.args, p.kwargs, at(2.0))[0]
    assert jnp.isfinite(lp_mean)
    assert lp_mean > lp_off  # the reference mean sits in the bulk of the model's density


@pytest.mark.parametrize("name", [n for n in POSTERIORS if not n.endswith("_centered")])
def test_reference_mean_is_near_stationary(name):
    """For these near-Gaussian posteriors the log density's gradient g at the reference mean is
    ~0 in the reference covariance metric: g' Cov g = O(MC error) (0.01-0.3 when written).
    Skipped for the centered funnel, whose density at the mean is not near a mode."""
    p = load(name)
    ref, draws = p.reference_summary(), _draws(name)
    keys = list(ref)
    mean = jnp.asarray([ref[k]["mean"] for k in keys], jnp.float32)
    lp = lambda x: log_density(p.model, p.args, p.kwargs, _site_values(p, dict(zip(keys, x))))[0]
    g = np.asarray(jax.jit(jax.grad(lp))(mean), np.float64)
    cov = np.cov(np.stack([draws[k] for k in keys]))
    assert g @ cov @ g < 1.0


def test_centered_and_noncentered_are_one_target():
    """p_centered(theta, mu, tau) = p_noncentered(theta_trans, mu, tau) / tau^J (+ a constant)."""
    nc, c = load(POSTERIORS[0]), load(POSTERIORS[1])
    draws = _draws(nc.name)
    diffs = []
    for i in range(0, 10_000, 1_000):
        point = {k: v[i] for k, v in draws.items()}
        lp_nc = log_density(nc.model, nc.args, nc.kwargs, _site_values(nc, point))[0]
        lp_c = log_density(c.model, c.args, c.kwargs, _site_values(c, point))[0]
        diffs.append(float(lp_c - lp_nc) + c.args[0] * np.log(point["tau"]))
    np.testing.assert_allclose(diffs, diffs[0], atol=1e-3)
