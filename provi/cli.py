"""The command line (floor 10): `provi fit [MODEL.py[:function]] --data DATA.json [options]`."""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys

import numpy as np

from provi.examples import eight_schools
from provi.fit import fit
from provi.programs import GUIDES
from provi.report import write_outputs

__all__ = ["main", "load_model", "load_data"]


def load_model(spec: str):
    """The model function named by `path/to/file.py[:function]` (default function name: `model`)."""
    path, _, name = spec.partition(":")
    name = name or "model"
    file = pathlib.Path(path)
    if not file.is_file():
        raise SystemExit(f"provi: no model file {path!r}")
    module_name = f"_provi_user_model_{abs(hash(str(file.resolve())))}"
    spec_ = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec_)
    sys.modules[module_name] = module
    spec_.loader.exec_module(module)
    fn = vars(module).get(name)
    if not callable(fn):
        raise SystemExit(f"provi: {path} has no function {name!r}; name it as {path}:FUNCTION")
    return fn


def load_data(path: str | None) -> dict:
    """Keyword arguments for the model from a JSON object: lists become arrays, integers stay ints."""
    if path is None:
        return {}
    raw = json.loads(pathlib.Path(path).read_text())
    if not isinstance(raw, dict):
        raise SystemExit(f"provi: {path} must hold a JSON object mapping model argument names to values")
    out = {}
    for k, v in raw.items():
        if isinstance(v, list):
            arr = np.asarray(v)
            out[k] = arr.astype(np.int32 if arr.dtype.kind in "iub" else np.float32)
        else:
            out[k] = v
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="provi", description="Programmable variational inference for NumPyro models.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit a model and write a summary, InferenceData, plots and a report")
    f.add_argument("model", nargs="?", help="MODEL.py[:function]; omitted: the built-in eight schools example")
    f.add_argument("--data", help="JSON object of the model's keyword arguments")
    f.add_argument("--guide", default="auto", help="the guide: " + ", ".join(("auto", *GUIDES)))
    f.add_argument("--steps", type=int, default=None, help="most optimisation steps (default: until converged)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", default="provi-out", help="output directory (default: provi-out)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.model is None:
        model, data, title = eight_schools.model, dict(eight_schools.DATA), "Eight schools (built-in example)"
        if args.data:
            data = load_data(args.data)
    else:
        model, data, title = load_model(args.model), load_data(args.data), f"provi fit of {args.model}"
    res = fit(model, guide=args.guide, steps=args.steps, seed=args.seed, progress=not args.no_progress, **data)
    outputs = write_outputs(res, args.out, title=title)
    import pandas as pd  # heavy: imported when first needed

    with pd.option_context("display.width", 120, "display.max_rows", 200):
        print(outputs["summary"].round(3).to_string())
    print()
    print(outputs["diagnostics"])
    print(f"\nwrote {args.out}/: report.md, summary.csv, posterior.nc, loss.png, diagnostics.json, fit/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
