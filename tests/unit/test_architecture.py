"""Architecture invariants of the package layout (issue 15): which packages an import pulls in, module size,
what the network class offers, one ConfigError, and no function-local imports of project modules (the way
import cycles get dodged instead of removed)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import unist.errors
import unist.model
import unist.train.config
from conftest import REPO
from unist.model import UniST, create_model

MAX_MODULE_LINES = 400  # issue 15: "no module over ~400 lines" (the largest is 369)
SOURCE_DIRS = ("unist", "kernels")
HEAVY = ("unist.model", "unist.train", "unist.forecast", "unist.objectives", "unist.evaluation", "unist.release")


def _loaded_after(statement: str) -> list[str]:
    """The `unist.*` modules loaded by running `statement` in a fresh interpreter."""
    code = f"import json, sys; {statement}; print(json.dumps(sorted(m for m in sys.modules if m.startswith('unist'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _within(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def _sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (REPO / d).rglob("*.py"))


def test_importing_the_data_package_loads_no_model_code():
    loaded = _loaded_after("import unist.data")
    assert "unist.data" in loaded
    heavy = _within(loaded, HEAVY)
    assert not heavy, f"`import unist.data` loads {heavy}: data code must not import the model, training, " \
                      "forecasting, objectives, evaluation or release packages"


def test_importing_the_release_format_loads_no_network_or_training_code():
    loaded = _loaded_after("import unist.release")
    assert "unist.release" in loaded
    heavy = _within(loaded, ("unist.model", "unist.train"))
    assert not heavy, f"`import unist.release` loads {heavy}: the folder format must not need the network or training"


def test_no_module_is_over_the_line_budget():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in _sources()}
    assert len(sizes) > 20  # the walk found the package
    over = {p: n for p, n in sorted(sizes.items()) if n > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines (split them): {over}"


def test_the_network_class_has_no_loss_anchor_or_forecasting_api():
    names = dir(UniST)
    bad = [n for n in names if "loss" in n.lower() or "anchor" in n.lower()]
    assert not bad, f"UniST has {bad}: losses live in unist.objectives, the classical ensemble in unist.evaluation"
    api = [n for n in names if n == "embed" or n.startswith(("forecast", "impute"))]
    assert not api, f"UniST has {api}: forecasting lives in unist.forecast.Forecaster"
    model = create_model("unist_tiny")
    parts = [n for n, _ in model.named_modules()] + [n for n, _ in model.named_parameters()]
    anchors = [n for n in parts if "anchor" in n]
    assert not anchors, f"UniST holds {anchors[:3]}: the four-candidate ensemble is unist.evaluation.ensemble"


def test_there_is_one_config_error():
    assert unist.errors.ConfigError is unist.model.ConfigError is unist.train.config.ConfigError
    assert issubclass(unist.errors.ConfigError, ValueError)  # callers catching ValueError keep working


def _function_local_project_imports(source: str, name: str) -> list[str]:
    """`import unist...` / `from unist... import` / relative imports inside a function body of the module `name`.

    Allowed: a package `__init__.py`'s module-level `__getattr__` (PEP 562 lazy attributes, so that importing
    a subpackage does not load the model: `unist.from_pretrained`)."""
    tree = ast.parse(source, filename=name)
    allowed = set()
    if name.endswith("__init__.py"):
        allowed = {id(n) for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"}
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or id(fn) in allowed:
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                project = node.level > 0 or (node.module or "").split(".")[0] == "unist"
            elif isinstance(node, ast.Import):
                project = any(a.name.split(".")[0] == "unist" for a in node.names)
            else:
                continue
            if project:
                found.append(f"{name}:{node.lineno} in {fn.name}(): {ast.unparse(node)}")
    return found


def test_no_function_local_imports_of_project_modules():
    offenders = sorted({o for p in _sources() for o in _function_local_project_imports(p.read_text(),
                                                                                        str(p.relative_to(REPO)))})
    assert not offenders, ("function-local imports of unist modules (move them to the top of the module; an import "
                           "cycle they dodge means a module is in the wrong package):\n  " + "\n  ".join(offenders))


def test_the_import_check_finds_function_local_imports():
    """The check above can fail: it sees absolute and relative imports in (nested) function bodies, and allows
    only a package's module-level __getattr__."""
    src = ("import os\n\ndef f():\n    import os.path\n    from unist.model import UniST\n\n"
           "class A:\n    def g(self):\n        from . import x\n\n"
           "def __getattr__(name):\n    from unist.forecast import Forecaster\n")
    found = sorted(f.split(" in ")[1] for f in _function_local_project_imports(src, "unist/x.py"))
    assert found == ["__getattr__(): from unist.forecast import Forecaster", "f(): from unist.model import UniST",
                     "g(): from . import x"]
    assert len(_function_local_project_imports(src, "unist/pkg/__init__.py")) == 2  # PEP 562 in a package: allowed
