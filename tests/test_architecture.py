"""The package's floors, checked on its source: imports at module level only, private names kept
to their folder, small modules. (The layering itself is import-linter's contract in .ci/run.)"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "provi"
FILES = sorted(p for p in ROOT.rglob("*.py"))


def _module(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _folder(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_provi_import_inside_a_function(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("provi"):
                    pytest.fail(f"{path.name}:{inner.lineno} imports provi inside {node.name}()")
                if isinstance(inner, ast.Import) and any(a.name.startswith("provi") for a in inner.names):
                    pytest.fail(f"{path.name}:{inner.lineno} imports provi inside {node.name}()")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_private_names_stay_in_their_folder(path):
    here = _folder(_module(path), path.name == "__init__.py")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("provi"):
            source = node.module
            for alias in node.names:
                if alias.name.startswith("_"):
                    owner = source.rpartition(".")[0] if (ROOT.parent / (source.replace(".", "/") + ".py")).exists() else source
                    assert owner == here, f"{path.name}:{node.lineno} imports the private name {alias.name} from {source}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_small(path):
    lines = len(path.read_text().splitlines())
    limit = 250 if path == ROOT / "fit.py" else 450
    assert lines <= limit, f"{path.relative_to(ROOT)} has {lines} lines (at most {limit})"
