"""The cold paths of two provi checkouts, in alternating pairs of new processes (#15).

    python benchmarks/cold_start.py --baseline PATH [--baseline-path EXTRA] [--pairs 8] [--json PATH]

`PATH` is another checkout of provi (for example `git worktree add /tmp/base <commit>`); each
side runs in new processes with its own source tree first on `sys.path` (`--baseline-path` and
`--path` put more folders before it, such as a `pip install --target` folder holding another
version of a dependency). Each pair runs, for the baseline and then this checkout (the order
alternating from pair to pair, so that a slow spell of the machine falls on both):

  import      `import provi` in a new process (and `import numpyro` alone, for the difference)
  fit         the all-default `provi.fit` of eight schools, progress bar on, empty compilation
              cache, imports excluded
  main job    `python -c "from provi.cli import run; run()" fit --out DIR` (the README's main
              job without the shell's entry-point script), process start to report written,
              empty compilation cache

One unmeasured main job per side first writes each tree's bytecode. Medians and ranges over pairs, and the median of the pairs' ratios, go to a table and JSON.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKDIR = tempfile.mkdtemp()  # the processes' working directory, empty: `python -c` puts it first on sys.path

FIT = """
import time
import provi
from provi.examples import eight_schools as ex
t = time.perf_counter()
provi.fit(ex.model, progress=True, **ex.DATA)
print("SECONDS", time.perf_counter() - t)
"""
IMPORT = "import time; t = time.perf_counter(); import {module}; print('SECONDS', time.perf_counter() - t)"


def _env(tree: Path, extra: list[str], cache: str) -> dict:
    path = os.pathsep.join([*extra, str(tree)])
    return dict(os.environ, PYTHONPATH=path, PROVI_CACHE_DIR=cache, PYTHONDONTWRITEBYTECODE="")


def _seconds(code: str, env: dict) -> float:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, cwd=WORKDIR)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(next(line for line in out.stdout.splitlines() if line.startswith("SECONDS")).split()[1])


def _main_job(env: dict) -> float:
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", "from provi.cli import run; run()", "fit", "--out", out],
                           env=env, capture_output=True, text=True, timeout=600, cwd=WORKDIR)
        seconds = time.perf_counter() - t
        if r.returncode != 0 or not (Path(out) / "report.md").is_file():
            raise RuntimeError(r.stderr[-2000:])
    return seconds


def _check_tree(tree: Path, extra: list[str]) -> None:
    """That the processes of a side import provi from its tree."""
    out = subprocess.run([sys.executable, "-c", "import provi; print(provi.__file__)"], env=_env(tree, extra, "off"),
                         capture_output=True, text=True, timeout=600, cwd=WORKDIR)
    if not out.stdout.strip().startswith(str(tree)):
        raise RuntimeError(f"provi imported from {out.stdout.strip() or out.stderr[-500:]}, not {tree}")


def measure(tree: Path, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        return {
            "import_provi": _seconds(IMPORT.format(module="provi"), _env(tree, extra, "off")),
            "import_numpyro": _seconds(IMPORT.format(module="numpyro"), _env(tree, extra, "off")),
            "fit": _seconds(FIT, _env(tree, extra, a)),
            "main_job": _main_job(_env(tree, extra, b)),
        }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, help="another provi checkout")
    p.add_argument("--baseline-path", action="append", default=[], help="a folder put before the baseline on sys.path")
    p.add_argument("--path", action="append", default=[], help="a folder put before this checkout on sys.path")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "cold_start.json"))
    args = p.parse_args()
    sides = {"baseline": (Path(args.baseline).resolve(), args.baseline_path), "this": (REPO, args.path)}
    runs = {"baseline": [], "this": []}
    with tempfile.TemporaryDirectory() as cache:
        for side in sides:  # unmeasured: writes each tree's bytecode, warms the disk cache
            _check_tree(*sides[side])
            _main_job(_env(sides[side][0], sides[side][1], cache))
    for i in range(args.pairs):
        order = ["baseline", "this"] if i % 2 == 0 else ["this", "baseline"]
        for side in order:
            runs[side].append(measure(*sides[side]))
        print(f"pair {i + 1}: " + "; ".join(f"{s} " + ", ".join(f"{k} {v:.2f}" for k, v in runs[s][-1].items()) for s in runs),
              flush=True)
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "pairs": args.pairs, "baseline": str(sides["baseline"][0]), "runs": runs}
    print(f"\n| figure | baseline median (range) | this median (range) | ratio (median of pairs) |\n|---|---|---|---|")
    for k in runs["this"][0]:
        b, t = [r[k] for r in runs["baseline"]], [r[k] for r in runs["this"]]
        ratio = statistics.median(y / x for x, y in zip(b, t))
        out[k] = {"baseline": statistics.median(b), "this": statistics.median(t), "ratio": ratio}
        print(f"| {k} | {statistics.median(b):.2f} ({min(b):.2f}-{max(b):.2f}) s | {statistics.median(t):.2f} "
              f"({min(t):.2f}-{max(t):.2f}) s | {ratio:.2f} |")
    for side in runs:
        diff = statistics.median(r["import_provi"] - r["import_numpyro"] for r in runs[side])
        out[f"import_over_numpyro_{side}"] = diff
        print(f"import provi minus import numpyro, {side}: {diff:.2f} s (median over pairs)")
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}))


if __name__ == "__main__":
    main()
