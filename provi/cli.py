"""The command line (floor 10).

    provi fit [MODEL.py[:function]] [--data DATA.json] [--guide G] [--steps N] [--seed S] [--out DIR] [--json]
    provi summary DIR [--json]        the summary and diagnostics of a fit written by `provi fit`
    provi report DIR                  write DIR's report again from its saved fit

A user's mistake (a missing or malformed file, data the model does not take or that does not fit
it, an unknown guide, a bad option, an output folder that cannot be written) is one line on
stderr, `provi: error: ...`, and exit status 2, found before any fitting starts. An exception
raised inside the user's model keeps its own traceback, trimmed to the user's frames.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import inspect
import json
import os
import pathlib
import sys
import traceback

import numpy as np

from provi.errors import ProviError
from provi.examples import eight_schools
from provi.fit import fit
from provi.programs import GUIDES
from provi.report import jsonable, write_outputs
from provi.saved import load

__all__ = ["main", "run", "load_model", "load_data", "UsageError"]

COMMAND_FILE = "command.json"  # what `provi fit` ran, so that `summary` and `report` can load the fit again


class UsageError(Exception):
    """A mistake in the command line's input: printed as one line, exit status 2."""


def load_model(spec: str):
    """The model function named by `path/to/file.py[:function]` (default function name: `model`)."""
    path, _, name = spec.partition(":")
    name = name or "model"
    file = pathlib.Path(path)
    if not file.is_file():
        raise UsageError(f"no model file {path!r}")
    module_name = f"_provi_user_model_{abs(hash(str(file.resolve())))}"
    spec_ = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec_)
    sys.modules[module_name] = module
    try:
        spec_.loader.exec_module(module)
    except SyntaxError as exc:
        raise UsageError(f"{path} line {exc.lineno}: syntax error: {exc.msg}") from None
    fn = vars(module).get(name)
    if not callable(fn):
        raise UsageError(f"{path} has no function {name!r}; name it as {path}:FUNCTION")
    return fn


def load_data(path: str | None) -> dict:
    """Keyword arguments for the model from a JSON object: lists become arrays, integers stay ints."""
    if path is None:
        return {}
    file = pathlib.Path(path)
    if not file.is_file():
        raise UsageError(f"no data file {path!r}")
    try:
        raw = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path} must hold a JSON object mapping model argument names to values")
    out = {}
    for k, v in raw.items():
        if isinstance(v, list):
            try:
                arr = np.asarray(v)
            except ValueError:
                raise UsageError(f"{path}: {k!r} is a ragged list; give arrays of one shape") from None
            if arr.dtype.kind not in "iubf":
                raise UsageError(f"{path}: {k!r} holds values that are not numbers")
            out[k] = arr.astype(np.int32 if arr.dtype.kind in "iub" else np.float32)
        else:
            out[k] = v
    return out


def _check_data(model, data: dict, source: str) -> None:
    """Every key of the data must be an argument the model takes."""
    params = inspect.signature(model).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(data) - set(params))
    if unknown:
        raise UsageError(f"{source} has {unknown}, which the model does not take (it takes {list(params)})")


def _check_out(out: str) -> pathlib.Path:
    """The output folder, checked (not created) before the fit: it or its nearest existing
    ancestor must be a writable folder."""
    path = pathlib.Path(out).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"cannot write the output folder {out!r}: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the output folder {out!r}: {str(existing)!r} is not writable")
    return pathlib.Path(out)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="provi", description="Programmable variational inference for NumPyro models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    f = sub.add_parser("fit", help="fit a model and write a summary, InferenceData, plots and a report")
    f.add_argument("model", nargs="?", help="MODEL.py[:function]; omitted: the built-in eight schools example")
    f.add_argument("--data", help="JSON object of the model's keyword arguments")
    f.add_argument("--guide", default="auto", help="the guide: " + ", ".join(("auto", *GUIDES)))
    f.add_argument("--steps", type=int, default=None, help="most optimisation steps (default: until converged)")
    f.add_argument("--seed", type=int, default=0, help="a non-negative integer (default 0)")
    f.add_argument("--out", default="provi-out", help="output directory (default: provi-out)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.add_argument("--json", action="store_true", help="print the summary and diagnostics as one JSON object")
    s = sub.add_parser("summary", help="print the summary and diagnostics of a fit written by `provi fit`")
    s.add_argument("dir", help="the output directory of `provi fit`")
    s.add_argument("--json", action="store_true", help="as one JSON object")
    r = sub.add_parser("report", help="write the report of a fit written by `provi fit` again")
    r.add_argument("dir", help="the output directory of `provi fit`")
    return p


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own mistakes: one line too
        raise UsageError(message)


def _model_and_data(model_spec, data_path):
    if model_spec is None:
        model, title = eight_schools.model, "Eight schools (built-in example)"
        data = load_data(data_path) if data_path else dict(eight_schools.DATA)
    else:
        model, data, title = load_model(model_spec), load_data(data_path), f"provi fit of {model_spec}"
    _check_data(model, data, data_path or "the built-in data")
    return model, data, title


def _fit(args) -> int:
    if args.steps is not None and args.steps <= 0:
        raise UsageError(f"--steps must be a positive integer, got {args.steps}")
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.guide not in ("auto", *GUIDES):
        raise UsageError(f"unknown guide {args.guide!r}; choose one of {', '.join(('auto', *GUIDES))}")
    model, data, title = _model_and_data(args.model, args.data)
    out = _check_out(args.out)
    res = fit(model, guide=args.guide, steps=args.steps, seed=args.seed, progress=not args.no_progress and not args.json, **data)
    outputs = write_outputs(res, out, title=title)
    command = {"model": args.model, "data": None if args.data is None else str(pathlib.Path(args.data).resolve()), "title": title,
               "guide": args.guide}
    if args.model is not None:
        command["model"] = str(pathlib.Path(args.model.partition(":")[0]).resolve()) + (":" + args.model.partition(":")[2] if ":" in args.model else "")
    (out / COMMAND_FILE).write_text(json.dumps(command, indent=2))
    _print(outputs["summary"], outputs["diagnostics"], args.json)
    if not args.json:
        print(f"\nwrote {args.out}/: report.md, summary.csv, posterior.nc, loss.png, diagnostics.json, fit/")
    return 0


def _load_saved(folder: str):
    path = pathlib.Path(folder)
    if not (path / COMMAND_FILE).is_file() or not (path / "fit" / "meta.json").is_file():
        raise UsageError(f"{folder!r} holds no fit written by `provi fit` (no {COMMAND_FILE} and fit/)")
    command = json.loads((path / COMMAND_FILE).read_text())
    model, data, _ = _model_and_data(command["model"], command["data"])
    return load(path / "fit", model, **data), command, path


def _summary(args) -> int:
    res, _, _ = _load_saved(args.dir)
    _print(res.summary(), res.diagnostics(), args.json)
    return 0


def _report(args) -> int:
    res, command, path = _load_saved(args.dir)
    write_outputs(res, path, title=command.get("title", "provi fit"))
    print(f"wrote {args.dir}/: report.md, summary.csv, posterior.nc, loss.png, diagnostics.json, fit/")
    return 0


def _print(summary, diagnostics, as_json: bool) -> None:
    if as_json:
        table = {name: {k: float(v) for k, v in row.items()} for name, row in summary.iterrows()}
        print(json.dumps({"summary": table, "diagnostics": jsonable(diagnostics.to_dict())}))
        return
    import pandas as pd  # heavy: imported when first needed

    with pd.option_context("display.width", 120, "display.max_rows", 200):
        print(summary.round(3).to_string())
    print()
    print(diagnostics)


_LIBRARIES = tuple(os.path.dirname(m.__file__) for m in (sys.modules["provi"], sys.modules["numpyro"], sys.modules["jax"]))


def _user_traceback(exc: BaseException) -> str:
    """The exception's traceback without provi's, NumPyro's and JAX's frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_LIBRARIES)]
    lines = ["Traceback (the model's frames):\n", *traceback.format_list(frames)]
    return "".join(lines + traceback.format_exception_only(type(exc), exc))


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
        return {"fit": _fit, "summary": _summary, "report": _report}[args.command](args)
    except UsageError as exc:
        print(f"provi: error: {exc}", file=sys.stderr)
        return 2
    except ProviError as exc:  # bad data or an estimator/objective that cannot apply: the message says what to do
        print(f"provi: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("provi: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in the user's model (or in provi): its traceback, trimmed to the user's frames
        sys.stderr.write(_user_traceback(exc))
        return 1


def run() -> None:
    """The `provi` command: `main()`, then the exit handlers, then the process ends without
    Python's finalisation. Every file is written and closed by then; the finalisation would only
    free JAX's compiled programs and the imported modules, 0.7-0.8 s after a `provi fit` on a
    2-core CPU (a quarter of the README's main job)."""
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
