"""Functions a reader can hold in mind: none in the package runs past LIMIT lines (issue #27)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mgc_lightning"
LIMIT = 60  # lines from `def` to the last line, docstring included


def test_no_function_of_the_package_is_longer_than_the_limit():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and length > LIMIT:
                long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, f"split these into named steps of at most {LIMIT} lines: {long}"
