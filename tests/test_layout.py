"""The package's layout holds what the README promises: its map names every module, subpackages say what they
hold, and modules and signatures stay readable."""

import ast
import re
from pathlib import Path

import alexnet

PACKAGE = Path(alexnet.__file__).resolve().parent
README = PACKAGE.parent / "README.md"
MAX_LINES = 350  # a module one reads at a sitting
MAX_PARAMETERS = 6  # more: pass a value object (a Feed, a ReportOptions, ...)
# Exempt from MAX_PARAMETERS: the public API's functions, whose options are keywords, and a Keras layer's
# constructor, whose arguments are its saved config (changing them would break saved models).
EXEMPT = {("data/splits.py", "load_splits"), ("results/evaluation.py", "evaluate"), ("model/layers.py", "__init__")}


def _map():
    """The README's tree of the package: {path relative to alexnet/: its line}."""
    block = README.read_text().split("```text\n  alexnet/\n", 1)[1].split("  ```", 1)[0]
    paths, parents = {}, []
    for line in block.splitlines():
        match = re.match(r"^  ((?:│   |    )*)(?:├── |└── )(\S+)", line)
        assert match, f"not a line of the tree: {line!r}"
        depth, name = len(match.group(1)) // 4, match.group(2)
        parents = parents[:depth] + [name.rstrip("/")]
        paths["/".join(parents) + ("/" if name.endswith("/") else "")] = line
    return paths


def _modules():
    """Every subpackage (as "name/") and module, relative to alexnet/; a subpackage's __init__.py only where it
    holds more than its docstring."""
    found = {path.parent.name + "/" for path in PACKAGE.glob("*/__init__.py")}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py" and path.parent != PACKAGE and len(ast.parse(path.read_text()).body) == 1:
            continue
        found.add(path.relative_to(PACKAGE).as_posix())
    return found


def test_the_readme_map_names_every_module_and_nothing_else():
    assert set(_map()) == _modules()


def test_each_subpackage_says_what_lives_there_and_what_it_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        modules = sorted(p.name for p in init.parent.glob("*.py") if p.name != "__init__.py")
        assert all(f"`{name}`" in doc for name in modules), (init, modules)
        assert "May import" in doc or "may import" in doc, init


def test_modules_stay_short_and_the_top_level_stays_small():
    assert len(list(PACKAGE.glob("*.py"))) <= 10 and len(list(PACKAGE.glob("*/__init__.py"))) >= 4
    long = {p.relative_to(PACKAGE).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_no_function_takes_more_than_six_parameters():
    found = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (relative, node.name) not in EXEMPT:
                args = node.args
                named = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
                if len(named) + bool(args.vararg) + bool(args.kwarg) > MAX_PARAMETERS:
                    found.append(f"{relative}:{node.lineno} {node.name}")
    assert not found, found
