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
MAY_IMPORT_KERAS = {"alexnet.model.layers", "alexnet.model.builders", "alexnet.pipeline.arrays",
                    "alexnet.pipeline.feed", "alexnet.pipeline.tf_engine",  # tf_engine: loaded on TensorFlow only
                    "alexnet.training.checkpoints", "alexnet.training.logs", "alexnet.training.stopping",
                    "alexnet.training.trainer"}


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
