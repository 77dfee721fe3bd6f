"""Rewrite decorated functions so that mutmut mutates them (used by scripts/mutation.sh on its copy of src/, never
on the work tree).

mutmut 3 skips every function with a decorator other than a lone @staticmethod / @classmethod, so a module whose
public functions carry `@jaxtyped(typechecker=beartype)` or `@beartype`, or whose classes expose `@property`s, would
show few or no mutants. This rewrites

    @d1
    @d2(arg)
    def f(...): ...

into the same thing applied after the definition, which Python defines to be equivalent:

    def f(...): ...
    f = d1(d2(arg)(f))

A property setter / deleter (`@x.setter`, which needs the property bound to x while the decorator is evaluated) and
`@overload` are left as they are, and so are the functions nested in other functions (mutmut mutates those as part of
the function around them).

    python scripts/mutation_undecorate.py FILE...
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

KEPT = {"staticmethod", "classmethod", "overload"}


def _keep(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    decorators = function.decorator_list
    if not decorators:
        return True
    for decorator in decorators:
        if isinstance(decorator, ast.Name) and decorator.id in KEPT:
            return True
        if isinstance(decorator, ast.Attribute) and decorator.attr in {"setter", "deleter", "getter", "overload"}:
            return True
    return False


def _functions(body: list[ast.stmt]) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The functions defined directly in a module or class body, and in the classes it defines."""
    found: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(node)
        elif isinstance(node, ast.ClassDef):
            found.extend(_functions(node.body))
    return found


def undecorate(source: str) -> str:
    """The module source with each decorated function's decorators applied by an assignment after it."""
    lines = source.splitlines(keepends=True)
    edits = []
    for function in _functions(ast.parse(source).body):
        if _keep(function):
            continue
        segments = [ast.get_source_segment(source, d) for d in function.decorator_list]
        if any(s is None or "\n" in s for s in segments):
            continue  # a decorator spread over lines: left as it is
        applied = function.name
        for segment in reversed(segments):
            applied = f"{segment}({applied})"
        indent = " " * function.col_offset
        first = function.decorator_list[0].lineno - 1  # the '@' line of the first decorator
        edits.append(
            (
                first,
                function.lineno - 1,
                function.end_lineno or function.lineno,
                f"{indent}{function.name} = {applied}\n",
            )
        )
    for first, def_line, end, assignment in sorted(edits, reverse=True):
        lines[end:end] = [assignment]
        del lines[first:def_line]
    return "".join(lines)


def main(paths: list[str]) -> None:
    for path in paths:
        file = Path(path)
        rewritten = undecorate(file.read_text())
        ast.parse(rewritten)  # still valid Python
        file.write_text(rewritten)


if __name__ == "__main__":
    main(sys.argv[1:])
