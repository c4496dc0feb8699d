"""The package's import rules, checked on its source: no import cycle, no import of another
module's private name, nothing imports the CLI, no module over ~600 lines; rewards/ and tasks/
never import jax (reward workers start fast and are tested without a model)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "r1jax"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import in a module, nested ones included."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, None, node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return [(m, n, line) for m, n, line in out if m == "r1jax" or m.startswith("r1jax.")]


def test_no_import_cycles():
    graph = {m: {i for i, _, _ in _imports(m) if i in MODULES and i != m} for m in MODULES}
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    graph = {m: {i for i in deps if not (m != "r1jax" and i.startswith(m + ".") and MODULES[m].name == "__init__.py")}
             for m, deps in graph.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for dep in sorted(graph[m]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[m] = "done"

    for m in MODULES:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_names_across_modules_and_nothing_imports_the_cli():
    bad = []
    for m in MODULES:
        for imported, name, line in _imports(m):
            if imported == "r1jax.cli" and m != "r1jax.cli":
                bad.append(f"{MODULES[m]}:{line}: imports the CLI")
            if name and name.startswith("_") and not name.startswith("__") and imported != m:
                bad.append(f"{MODULES[m]}:{line}: imports private {imported}.{name}")
        # module._name on an imported r1jax module
        tree = ast.parse(MODULES[m].read_text())
        aliases = {a.asname or a.name: f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and (n.module or "").startswith("r1jax") for a in n.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and aliases.get(node.value.id) in MODULES):
                bad.append(f"{MODULES[m]}:{node.lineno}: uses private {node.value.id}.{node.attr}")
    assert not bad, "\n".join(bad)


def test_no_module_over_about_600_lines():
    """One concept a file: a module past ~600 lines is a catalogue to split (evaluate.py sits at 604)."""
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > 610}
    assert not long, f"modules over ~600 lines: {long}"


def test_rewards_and_tasks_import_without_jax():
    code = "import sys, r1jax.rewards, r1jax.rewards.workers, r1jax.tasks; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_the_rules_catch_what_they_claim_to(tmp_path, monkeypatch):
    """The checks above fail on a planted cycle and a planted private import (a rule that cannot
    fail proves nothing)."""
    global MODULES
    fake = {"r1jax.a": tmp_path / "a.py", "r1jax.b": tmp_path / "b.py"}
    fake["r1jax.a"].write_text("from r1jax.b import _hidden\n")
    fake["r1jax.b"].write_text("import r1jax.a\n")
    monkeypatch.setitem(globals(), "MODULES", fake)
    private_check = test_no_private_names_across_modules_and_nothing_imports_the_cli
    for check, message in ((test_no_import_cycles, "r1jax.a -> r1jax.b -> r1jax.a"),
                           (private_check, "private r1jax.b._hidden")):
        try:
            check()
        except AssertionError as e:
            assert message in str(e)
        else:
            raise AssertionError(f"{check.__name__} passed on a planted violation")


def test_no_config_field_is_declared_twice():
    """A dataclass silently keeps the last of two fields with one name (a second `data` once
    replaced distillation's SFT file): every class body declares each name once."""
    twice = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names = [s.target.id for s in node.body
                         if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
                twice += [f"{path}: {node.name}.{n}" for n in set(names) if names.count(n) > 1]
    assert not twice, twice
