"""The persistent compilation cache: a second process fitting the same model compiles nothing."""

import json
import subprocess
import sys

SCRIPT = """
import json, jax
from jax import monitoring
counts = {"requests": 0, "hits": 0}
names = {"/jax/compilation_cache/compile_requests_use_cache": "requests", "/jax/compilation_cache/cache_hits": "hits"}
monitoring.register_event_listener(lambda event, **kw: counts.__setitem__(names[event], counts[names[event]] + 1) if event in names else None)
import provi
from provi.examples import eight_schools as es
res = provi.fit(es.model, progress=False, **es.DATA)
print(json.dumps({**counts, "mean_mu": float(res.summary().loc["mu", "mean"])}))
"""


def test_a_second_process_loads_every_program_of_the_default_fit_from_disk(tmp_path):
    """Eight schools' all-default fit (auto: start, loop, mode search, k-hat, tails) and its
    summary, twice in new processes with one `PROVI_CACHE_DIR`: the first compiles and writes
    every program (`provi.defaults.PERSISTENT_CACHE_MIN_SECONDS` is 0), the second finds every
    one on disk, and the answers are the same."""
    env = {"PROVI_CACHE_DIR": str(tmp_path), "PATH": "", "JAX_PLATFORMS": "cpu"}
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    # the first process finds on disk only what it compiled twice itself (a refit's importance
    # weights: the same program for a new model program object)
    assert first["requests"] > 10 and first["hits"] <= 2, first
    assert second["requests"] == first["requests"] and second["hits"] == second["requests"], second
    assert second["mean_mu"] == first["mean_mu"]
    assert len(list(tmp_path.iterdir())) >= first["requests"] - first["hits"]
