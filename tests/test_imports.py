"""Which modules may load Keras when imported: the rule that the backend is chosen before Keras loads.

The CLI, the config, the recipes and the run folders are read before the backend is chosen, so only the
modules that build or train models import Keras (or a backend) at their top; every other module, and the
package itself, must not load it, directly or through the modules it imports.
"""

import ast
from pathlib import Path

import alexnet

PACKAGE = Path(alexnet.__file__).resolve().parent
BACKEND_MODULES = {"keras", "tensorflow", "jax", "torch"}
# Imported only once the backend is chosen (by alexnet.training.start, the CLI's commands, or the user's own code).
MAY_IMPORT_KERAS = {"alexnet.model.layers", "alexnet.model.ten_crop", "alexnet.model.builders", "alexnet.model.compiling",
                    "alexnet.model.importing", "alexnet.model.transfer",
                    "alexnet.pipeline.arrays", "alexnet.pipeline.tf_engine",  # tf_engine: loaded on TensorFlow only
                    "alexnet.training.checkpoints", "alexnet.training.mid_epoch", "alexnet.training.inputs",
                    "alexnet.training.job",
                    "alexnet.training.logs", "alexnet.training.stopping", "alexnet.training.trainer"}
# Subpackage -> the other subpackages (or single modules of them) its modules may import, anywhere in the file, as
# each subpackage's __init__.py says. The modules at the top of the package (errors, console, files, runs, backend)
# may be imported by any.
MAY_IMPORT = {
    "settings": {"model.architecture", "model.sources"},
    "model": {"settings"},
    "data": {"settings"},
    "pipeline": {"settings", "data"},
    "results": {"settings", "model", "data", "pipeline"},
    "training": {"settings", "model", "data", "pipeline", "results"},
}


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path):
    """The modules a file imports at its top level (function-local imports run later, after the choice)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from alexnet import runs`
    return names


MODULES = {_module_name(path): _top_level_imports(path) for path in PACKAGE.rglob("*.py")}


def _loads_keras(name):
    """Whether importing `name` loads a backend: through any module it reaches (a package's __init__ runs too)."""
    pending, seen = [name], set()
    while pending:  # a walk over the import graph, each module once (enumerating paths grows exponentially)
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        imports = MODULES.get(current, set())
        if any(i.split(".")[0] in BACKEND_MODULES for i in imports):
            return True
        parents = {".".join(current.split(".")[:k]) for k in range(1, current.count(".") + 1)}
        pending += [i for i in imports | parents if i in MODULES]
    return False


def test_only_the_model_building_modules_load_keras():
    loading = {name for name in MODULES if _loads_keras(name)}
    assert loading <= MAY_IMPORT_KERAS, sorted(loading - MAY_IMPORT_KERAS)
    assert {"alexnet.model.builders", "alexnet.training.trainer"} <= loading  # the rule is checked, not vacuous
    assert "alexnet" not in loading and "alexnet.cli" not in loading and "alexnet.settings.config" not in loading


def _all_imports(path):
    """Every alexnet module a file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | ({f"alexnet.{alias.name}" for alias in node.names} if node.module == "alexnet"
                                      else set())
    return {name for name in names if name.startswith("alexnet.")}


def test_each_subpackage_imports_only_what_its_docstring_allows():
    subpackages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(MAY_IMPORT)  # a new subpackage needs its rule here and in its __init__.py
    broken = []
    for path in PACKAGE.glob("*/*.py"):
        own = path.parent.name
        for name in _all_imports(path):
            target = name.split(".")[1:]
            if target[0] == own or target[0] not in subpackages:
                continue
            if not any(".".join(target[:len(rule.split("."))]) == rule for rule in MAY_IMPORT[own]):
                broken.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not broken, broken
    assert "alexnet.model.architecture" in _all_imports(PACKAGE / "settings" / "choices.py")  # the walk sees imports
