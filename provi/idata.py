"""ArviZ's InferenceData layout in xarray alone (floor 1): its groups as `xarray.Dataset`s and its
netCDF file.

`FitResult.to_arviz` wraps these groups in an `arviz.InferenceData`; the command line's report
writes `posterior.nc` from them directly, because importing ArviZ (for its plots it loads pyplot
and scipy.stats) takes about a second, a fifth of the README's main job. The layout is
`arviz.from_dict`'s: a draw group has dimensions `chain` and `draw`, then `{name}_dim_{k}` for
each further axis of a variable, each with an integer coordinate; a group is a netCDF group of
the file, its numeric variables zlib-compressed, as `InferenceData.to_netcdf` writes it, so
`arviz.from_netcdf` reads the file back.
"""

from __future__ import annotations

import datetime
import importlib.metadata

import numpy as np

__all__ = ["dataset", "write_netcdf"]


def _attrs() -> dict:
    """What `arviz.from_dict` stamps on a group: when, and by which ArviZ."""
    return {"created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), "arviz_version": importlib.metadata.version("arviz")}


def dataset(values: dict, draws: bool = True):
    """The group `arviz.from_dict` makes of `values` ({name: array}): with `draws`, each array's
    first two axes are `(chain, draw)`; every other axis k of variable `name` is `{name}_dim_{k}`.

    >>> ds = dataset({"theta": np.zeros((1, 4, 3))})
    >>> dict(ds.sizes)
    {'chain': 1, 'draw': 4, 'theta_dim_0': 3}
    """
    import xarray as xr  # heavy: imported when first needed

    lead = ("chain", "draw") if draws else ()
    variables, coords = {}, {}
    for name, value in values.items():
        value = np.asarray(value)
        if value.ndim < len(lead):
            raise ValueError(f"{name!r} has shape {value.shape}: a draw group needs (chain, draw, ...)")
        dims = lead + tuple(f"{name}_dim_{k}" for k in range(value.ndim - len(lead)))
        variables[name] = (dims, value)
        for dim, size in zip(dims, value.shape):
            coords.setdefault(dim, np.arange(size))
    return xr.Dataset(variables, coords=coords, attrs=_attrs())


def write_netcdf(groups: dict, path) -> str:
    """Write `groups` ({group name: xarray.Dataset}) as `InferenceData.to_netcdf` does: one netCDF
    group each (h5netcdf), numeric, boolean and byte-string variables zlib-compressed; returns the path."""
    path, mode = str(path), "w"
    for name, ds in groups.items():
        encoding = {k: {"zlib": True} for k, v in ds.variables.items() if v.dtype.kind in "biufcS"}
        ds.to_netcdf(path, mode=mode, group=f"/{name}", engine="h5netcdf", encoding=encoding)
        mode = "a"
    return path
