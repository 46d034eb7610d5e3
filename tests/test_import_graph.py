"""No import circles among the modules that used to form them (issue 26): cli <-> compare/evidence
(they shared the argument types, now tinysml/arguments.py) and deploy <-> streaming (the recognizer
now asks for a ``Classifier`` protocol, not deploy's Predictor). Every import statement counts,
inside functions and ``TYPE_CHECKING`` blocks too."""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tinysml")


def imports_of(module: str) -> set:
    """The tinysml modules ``module`` (a name like "cli" or "distill.pipeline") imports anywhere."""
    path = os.path.join(PACKAGE, *module.split(".")) + ".py"
    tree = ast.parse(open(path).read())
    package = module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            target = base + (node.module.split(".") if node.module else [])
            names = [".".join(target + [a.name]) for a in node.names] + [".".join(target)]
            found |= {n for n in names if n and os.path.exists(os.path.join(PACKAGE, *n.split(".")) + ".py")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinysml."):
            found.add(node.module[len("tinysml."):])
    return found


def reaches(start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for n in imports_of(m):
            if n == goal:
                return True
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return False


@pytest.mark.parametrize("a, b", [("cli", "compare"), ("cli", "evidence"), ("deploy", "streaming"),
                                  ("compare", "records")])
def test_no_import_circle(a, b):
    assert not (reaches(a, b) and reaches(b, a)), f"{a} and {b} import each other"


def test_the_graph_reader_sees_real_imports():
    assert "compare" in imports_of("evidence") and "arguments" in imports_of("cli")
    assert "streaming" in imports_of("deploy")
