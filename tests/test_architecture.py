"""The package's structure stays as the README's "Architecture" section documents it:
imports go one way (read from the source with ``ast``, function-level imports included),
there is no import cycle, the numpy-only bottom imports no torch, and every stage type is one
registered class whose spec defaults and builder method are derived from it."""
import ast
import inspect
from collections import defaultdict
from pathlib import Path

import pytest

import nnaudio_export as nx
from nnaudio_export.checks import REQUIRED
from nnaudio_export.spec import STAGE_DEFAULTS
from nnaudio_export.stages import ROLES, STAGES

PACKAGE = Path(nx.__file__).resolve().parent
# The documented order (README, "Architecture"): a module may import only from groups
# before its own (and, inside a sub-package, its siblings). '__init__' is the lazy facade.
ORDER = [
    {"_version", "allocator", "checks", "kernels", "signals", "manifest", "install", "wav"},
    {"functional"},
    {"layers"},
    {"stages"},
    {"spec"},
    {"builder"},
    {"presets", "streaming"},
    {"onnx_rewrites"},
    {"bundle"},
    {"stream_bundle"},
    {"devices", "ort_cpu"},
    {"runtime"},
    {"stream_runtime"},
    {"tolerances"},
    {"parity"},
    {"references"},
    {"convert"},
    {"api"},
    {"triton", "bench"},
    {"cli"},
    {"__init__"},
]
RANK = {name: i for i, group in enumerate(ORDER) for name in group}
NO_TORCH = {"_version", "allocator", "checks", "kernels", "signals", "manifest", "install", "wav"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    """(target module inside the package, line) for every import in the file, resolved to a
    dotted name relative to the package; plus the external top-level modules imported."""
    name = _module_name(path)
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    if name == "__init__":
        here = []
    inner, outer = [], set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("nnaudio_export."):
                    inner.append((a.name[len("nnaudio_export."):], node.lineno))
                outer.add(a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                mod = node.module or ""
                if mod == "nnaudio_export" or mod.startswith("nnaudio_export."):
                    base = mod[len("nnaudio_export."):] if mod != "nnaudio_export" else ""
                else:
                    outer.add(mod.split(".")[0])
                    continue
            else:
                anchor = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                base = ".".join(anchor + ([node.module] if node.module else []))
            for a in node.names:
                target = f"{base}.{a.name}" if base else a.name
                inner.append((_existing(target) or _existing(base) or base, node.lineno))
    return name, inner, outer


def _existing(dotted: str):
    if not dotted:
        return None
    p = PACKAGE.joinpath(*dotted.split("."))
    if p.with_suffix(".py").is_file() or (p / "__init__.py").is_file():
        return dotted
    return None


def _all_files():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_documented_place():
    tops = {_module_name(p).split(".")[0] for p in _all_files()}
    assert tops - set(RANK) == set(), "add new modules to ORDER here and in the README"


def test_imports_go_down_the_documented_order():
    bad = []
    for path in _all_files():
        name, inner, _ = _imports(path)
        src = name.split(".")[0]
        for target, line in inner:
            dst = target.split(".")[0]
            if dst == src and src != "__init__":
                continue  # inside one sub-package (cycles are checked below)
            if RANK[dst] >= RANK[src]:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} ({src}) imports {target} ({dst})")
    assert not bad, "imports that go up the documented order:\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = defaultdict(set)
    for path in _all_files():
        name, inner, _ = _imports(path)
        for target, _line in inner:
            if target and target != name:
                graph[name].add(target)
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # importing a sub-package's member goes through its __init__: parents count
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_numpy_only_bottom_imports_no_torch():
    for path in _all_files():
        name, _, outer = _imports(path)
        if name.split(".")[0] in NO_TORCH:
            assert "torch" not in outer, f"{path.relative_to(PACKAGE)} imports torch"


def test_importing_the_package_is_lazy():
    import subprocess
    import sys
    code = ("import sys, nnaudio_export as nx; assert nx.__version__; "
            "print(sorted(m for m in ('torch', 'scipy', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the registry

@pytest.mark.parametrize("kind", sorted(STAGES))
def test_stage_class_declares_itself(kind):
    cls = STAGES[kind]
    assert cls.type_name == kind and cls.role in ROLES
    module = inspect.getmodule(cls).__name__.rsplit(".", 1)[-1]
    # An input stage lives with what it takes: audio (audio.py) or a spectrum (synthesis.py).
    expected = {"input": {"audio": "audio", "spectrum": "synthesis"}.get(getattr(cls, "input_kind", ""), "?"),
                "audio": "audio", "transform": "transforms", "spectral": "spectral",
                "scaling": "scaling", "normalisation": "normalisation", "layout": "layout",
                "synthesis": "synthesis"}[cls.role]
    assert module == expected, f"{cls.__name__} (role {cls.role}) lives in stages/{module}.py"
    assert cls.__doc__ and cls.__doc__.strip()
    assert STAGE_DEFAULTS[kind] == {p.name: p.default for p in cls.params if p.default is not REQUIRED}


@pytest.mark.parametrize("kind", sorted(STAGES))
def test_builder_method_is_derived_from_the_stage(kind):
    method = getattr(nx.FrontendBuilder, kind)
    params = list(inspect.signature(method).parameters.values())[1:]
    declared = STAGES[kind].params
    assert [p.name for p in params] == [p.name for p in declared]
    for p, d in zip(params, declared):
        if d.required:
            assert p.default is inspect.Parameter.empty
        else:
            assert p.default == d.default
    assert kind in method.__name__
