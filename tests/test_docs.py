"""The documentation site builds in strict mode, and its code runs.

- `mkdocs build --strict` (mkdocs-material + mkdocstrings): every page in the nav, no broken link,
  every API object found and its docstring rendered.
- Each tutorial page (`docs/tutorials/*.md`) is a script: its ```python blocks, joined in order,
  run to the end in a fresh interpreter.
- The user guide's and the home page's ```python blocks run too (slower, marked `slow`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
TIMEOUT = 300
PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    """The ```python fenced blocks of a Markdown page, in order (fences at the start of a line)."""
    return PYTHON_BLOCK.findall(page.read_text(encoding="utf-8"))


# the home page and user guide pages that hold Python code (scale.md, bdl.md and wasserstein.md show fragments)
GUIDE_PAGES = [p for p in [DOCS / "index.md", *sorted((DOCS / "guide").glob("*.md"))] if python_blocks(p)]


def _env() -> dict:
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    env["NO_MKDOCS_2_WARNING"] = "1"  # mkdocs-material's notice about its successor, on every build
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _tail(text: str, n: int = 4000) -> str:
    return text if len(text) <= n else "...\n" + text[-n:]


def _run_page(page: Path, tmp_path: Path) -> None:
    blocks = python_blocks(page)
    assert blocks, f"{page.relative_to(ROOT)} has no ```python blocks"
    script = tmp_path / f"{page.stem}.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=_env(), capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{page.relative_to(ROOT)} did not finish in {TIMEOUT} s; stderr:\n{_tail(exc.stderr or '')}")
    assert proc.returncode == 0, (
        f"the code of {page.relative_to(ROOT)} failed (exit status {proc.returncode}); stderr:\n{_tail(proc.stderr)}"
    )


def test_site_builds_in_strict_mode(tmp_path):
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if importlib.util.find_spec(m.split(".")[0]) is None or importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(
            f"building the documentation needs {missing}: pip install mkdocs mkdocs-material 'mkdocstrings[python]'"
        )
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed (exit status {proc.returncode}):\n{_tail(proc.stderr)}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert not (ROOT / "site").exists(), "the build must not write site/ into the repository"


def test_every_page_is_in_the_nav():
    import yaml  # a dependency of mkdocs

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    in_nav = set(pages(config["nav"]))
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert on_disk - in_nav == set(), "pages missing from the nav of mkdocs.yml"
    assert in_nav - on_disk == set(), "nav entries with no page"


def test_there_are_tutorials():
    assert len(TUTORIALS) >= 4, [p.name for p in TUTORIALS]


@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(page, tmp_path):
    _run_page(page, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("page", GUIDE_PAGES, ids=[p.relative_to(DOCS).with_suffix("").as_posix() for p in GUIDE_PAGES])
def test_guide_examples_run(page, tmp_path):
    _run_page(page, tmp_path)
