"""The shape of the code: one concern per module, no module over 500 lines (tests and benchmark
scripts too), no import cycle between modules (counting imports inside functions, not those
for type checkers), and no benchmark script that reaches into the command line."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((REPO / "search").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(path: Path, modules: dict[str, Path]) -> set[str]:
    """The castsearch modules ``path`` imports, anywhere in it but under ``if TYPE_CHECKING``."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package up
                package = path.relative_to(REPO).with_suffix("").parts[:-1]
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            # ``from package import module`` needs the module; ``from module import name``, the module
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            names = []
        for name in names:
            if name in modules:
                out.add(name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return out


def test_no_module_is_over_500_lines():
    """The package, the networks, the benchmark scripts and the tests alike."""
    files = [path for folder in ("search", "castmodels", "bench", "tests") for path in (REPO / folder).rglob("*.py")]
    long = {str(path.relative_to(REPO)): n for path in files if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (module -> the modules it imports) as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := walk(name)):
            return cycle
    return None


def test_search_has_no_import_cycle():
    modules = _modules()
    graph = {name: _imported(path, modules) - {name} for name, path in modules.items()}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from search.x import b\n")
    b.write_text("import search.x.a\n")
    modules = {"search.x.a": a, "search.x.b": b}
    assert _imported(a, modules) == {"search.x.b"}
    assert _imported(b, modules) == {"search.x.a"}
    assert find_cycle({"search.x.a": {"search.x.b"}, "search.x.b": {"search.x.a"}}) == [
        "search.x.a", "search.x.b", "search.x.a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_bench_script_imports_the_command_line():
    for path in sorted((REPO / "bench").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n == "search.cli" or n.startswith("search.cli.") for n in names), path.name
