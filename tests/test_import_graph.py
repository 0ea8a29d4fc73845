"""freemask's import graph, read from the source (ast, nothing imported): no import loop at all, and no private name
imported from outside the importing module's own package.

Imports at module level and inside functions are read together: a deferred import inside a function still makes the
two modules depend on each other (the loops closed so far were held open that way, the last one by the model
registries, now in the leaf module ``freemask/modeling/registry.py``). A package's ``__init__.py`` importing its own
modules is an edge from the package to them; the interpreter importing a package before its module is not an edge
(every package would otherwise be a loop with its children).
"""

import ast
import os
from typing import Dict, List, Set, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "freemask")


def module_files() -> Dict[str, str]:
    """Dotted module name -> file, for every .py file under freemask/ (a package is its __init__.py)."""
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, REPO)[: -len(".py")].replace(os.sep, ".")
                modules[dotted.removesuffix(".__init__")] = path
    return modules


def _imported_module(modules: Dict[str, str], importer: str, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    package = importer if modules[importer].endswith("__init__.py") else importer.rsplit(".", 1)[0]
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(modules: Dict[str, str], name: str) -> str:
    """``name`` or its closest enclosing freemask module; '' outside freemask."""
    while name and name not in modules:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


class Imports(ast.NodeVisitor):
    """The freemask modules one module imports, at module level and inside functions, and the private names it
    imports (module it reads from, name)."""

    def __init__(self, modules: Dict[str, str], importer: str) -> None:
        self.modules, self.importer = modules, importer
        self.module_level: Set[str] = set()
        self.in_functions: Set[str] = set()
        self.private: List[Tuple[str, str]] = []
        self.depth = 0

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def _add(self, target: str) -> None:
        target = _known(self.modules, target)
        if target and target != self.importer:
            (self.in_functions if self.depth else self.module_level).add(target)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = _imported_module(self.modules, self.importer, node)
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in self.modules:
                self._add(submodule)
                continue
            self._add(source)
            if alias.name.startswith("_") and _known(self.modules, source):
                self.private.append((source, alias.name))


def import_graph() -> Dict[str, Imports]:
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        graph[name] = Imports(modules, name)
        graph[name].visit(tree)
    return graph


def strongly_connected(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_the_graph_sees_the_imports_it_must_see():
    """The reader itself: a relative import, a submodule import, a function-level import and a private name."""
    graph = import_graph()
    assert "freemask.errors" in graph["freemask.cli"].module_level
    assert "freemask.modeling.ops.deform_attn_pytorch" in graph["freemask.modeling.ops"].module_level
    assert "freemask.modeling" in graph["freemask.checkpoint.trained_model"].in_functions
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_loop_at_module_level():
    graph = import_graph()
    assert strongly_connected({name: imports.module_level for name, imports in graph.items()}) == []


def test_no_loop_through_imports_inside_functions_either():
    graph = import_graph()
    edges = {name: imports.module_level | imports.in_functions for name, imports in graph.items()}
    assert strongly_connected(edges) == []


def test_no_module_loads_names_on_first_access():
    """No module ``__getattr__`` (PEP 562) loading: a name a module exports is bound when the module is imported, so
    go-to-definition finds it and the graph above sees the import."""
    lazy = []
    for name, path in module_files().items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        if any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in tree.body):
            lazy.append(name)
    assert lazy == []


def test_no_private_name_imported_from_another_package():
    """``from freemask.x.y import _name`` only inside package ``freemask.x``: a private name is not an interface."""
    modules = module_files()
    crossing = []
    for name, imports in import_graph().items():
        own_package = name if modules[name].endswith("__init__.py") else name.rsplit(".", 1)[0]
        for source, private in imports.private:
            if not (source == own_package or source.startswith(own_package + ".")):
                crossing.append(f"{name} imports {private} from {source}")
    assert crossing == []
