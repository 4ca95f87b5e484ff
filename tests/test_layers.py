"""Which way imports go (docs/ARCHITECTURE.md), read from the source of every module:

- the core (every module outside protocols/, api/ and cli/: specs, data, models, training, jobs,
  media, and the bottom modules such as errors, events, progress) never imports protocols, api
  or cli; protocols never import cli;
- no import cycles among ltxtune modules (every import counts, also those inside functions;
  imports under `if TYPE_CHECKING:` do not run and do not count; `from pkg import module` is a
  dependency on that module);
- nothing outside protocols/ names a hosted API in its code (docstrings and comments aside),
  except the price table, whose keys are the price file's format;
- `import ltxtune.api` (and the protocols, and the command line) stays torch-free.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "ltxtune"
UPPER = ("protocols", "api", "cli")  # everything else is the core
API_NAMES = ("fal", "civitai")
NAMES_ALLOWED_IN = {"ltxtune.specs.pricing"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            found |= set().union(*(_imports(child, module, is_package) for child in node.orelse)) if node.orelse else set()
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import module` depends on the module; `from module import name` on the module
            modules = {f"{target}.{alias.name}" for alias in node.names} & MODULES.keys()
            found |= modules if len(modules) == len(node.names) else modules | {target}
        found |= _imports(node, module, is_package)
    return found


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    return {name for name in _imports(tree, module, path.name == "__init__.py") if name in MODULES}


GRAPH = {module: imports_of(module) for module in MODULES}


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("module", sorted(m for m in MODULES if top(m) not in UPPER))
def test_the_core_never_imports_the_layers_above(module):
    above = sorted(name for name in GRAPH[module] if top(name) in UPPER)
    assert not above, f"{module} imports {above}"


def test_protocols_never_import_the_command_line():
    offenders = {m: sorted(n for n in GRAPH[m] if top(n) == "cli") for m in MODULES if top(m) == "protocols"}
    assert not {m: found for m, found in offenders.items() if found}


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for name in sorted(GRAPH[module]):
            if state.get(name) == 1:
                cycle = stack[stack.index(name):] + [name]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if name not in state:
                visit(name)
        stack.pop()
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


API_WORD = re.compile(r"(?<![a-z])(" + "|".join(API_NAMES) + r")(?![a-z])")


def _names_an_api(text: str) -> bool:
    return API_WORD.search(text.lower()) is not None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if top(m) != "protocols" and m not in NAMES_ALLOWED_IN))
def test_only_protocols_name_a_hosted_api(module):
    tree = ast.parse(MODULES[module].read_text())
    docstrings = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if _names_an_api(node.value):
                found.append(node.value)
        elif isinstance(node, ast.Name) and _names_an_api(node.id):
            found.append(node.id)
        elif isinstance(node, ast.Attribute) and _names_an_api(node.attr):
            found.append(node.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
            found += [name for name in names if any(part in API_NAMES for part in name.split("."))]
    assert not found, f"{module} names a hosted API: {found}"


def test_the_api_protocols_and_command_line_import_without_torch():
    code = (
        "import sys, ltxtune.api, ltxtune.api.app, ltxtune.protocols, ltxtune.cli, ltxtune.jobs.worker; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
