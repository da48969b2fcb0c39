"""provi.idata: ArviZ's InferenceData layout written with xarray alone."""

import subprocess
import sys
import textwrap

import arviz as az
import numpy as np
import pytest
import xarray as xr

import provi
from provi.idata import dataset, write_netcdf


def _same(a: xr.Dataset, b: xr.Dataset):
    """Identical but for when each was made."""
    assert a.attrs.keys() == b.attrs.keys()
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


@pytest.fixture(scope="module")
def fitted():
    from provi.examples import eight_schools

    return provi.fit(eight_schools.model, guide="meanfield", steps=300, progress=False, **eight_schools.DATA)


def test_groups_are_arviz_from_dict(fitted):
    """The posterior (a vector site and a deterministic one) and observed data: what
    `arviz.from_dict` makes of the same draws, dimension names and coordinates included."""
    groups = fitted.to_xarray(120, seed=3)
    draws = fitted._with_deterministic(fitted.weighted_draws(120, seed=3)[0])
    ref = az.from_dict(posterior={k: v[None] for k, v in draws.items()},
                       observed_data={k: np.asarray(v) for k, v in fitted.model.info.observed.items() if v is not None})
    _same(groups["posterior"], ref.posterior)
    _same(groups["observed_data"], ref.observed_data)
    assert groups["posterior"]["theta"].dims == ("chain", "draw", "theta_dim_0")
    np.testing.assert_array_equal(groups["sample_stats"]["loss"].values, fitted.losses)
    np.testing.assert_array_equal(groups["sample_stats"]["log_weight"].values[0], fitted.weighted_draws(120, seed=3)[1])


def test_netcdf_is_arviz_file(fitted, tmp_path):
    """`write_netcdf` writes the file ArviZ's own `to_netcdf` writes: `from_netcdf` reads back the
    same groups, compressed as ArviZ compresses them."""
    groups = fitted.to_xarray(80, seed=1)
    write_netcdf(groups, tmp_path / "mine.nc")
    az.InferenceData(**groups).to_netcdf(str(tmp_path / "arviz.nc"))
    mine, theirs = az.from_netcdf(str(tmp_path / "mine.nc")), az.from_netcdf(str(tmp_path / "arviz.nc"))
    assert mine.groups() == theirs.groups() == ["posterior", "sample_stats", "observed_data"]
    for g in mine.groups():
        xr.testing.assert_identical(mine[g], theirs[g])
        xr.testing.assert_identical(mine[g], groups[g])
    import h5netcdf

    with h5netcdf.File(tmp_path / "mine.nc", "r") as f:
        assert f["posterior"].variables["theta"].compression == "gzip"


def test_dataset_checks_draw_axes():
    assert dict(dataset({"x": np.zeros(3)}, draws=False).sizes) == {"x_dim_0": 3}
    with pytest.raises(ValueError, match="'x' has shape \\(3,\\)"):
        dataset({"x": np.zeros(3)})


def test_report_does_not_import_arviz(tmp_path):
    """The report writes posterior.nc without importing ArviZ (about a second of the main job)."""
    script = textwrap.dedent(f"""
        import sys
        import provi
        from provi.examples import eight_schools
        from provi.report import write_outputs
        res = provi.fit(eight_schools.model, guide="meanfield", steps=200, progress=False, **eight_schools.DATA)
        write_outputs(res, {str(tmp_path / "out")!r}, draws=200)
        print("arviz" in sys.modules, "xarray" in sys.modules)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True"]
    assert az.from_netcdf(str(tmp_path / "out" / "posterior.nc")).posterior.sizes["draw"] == 200
