"""scripts/mutation_undecorate.py: decorators applied after the definition, the same module by Python's rules."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "mutation_undecorate.py"
SOURCE = """
import functools

def tag(label):
    def wrap(f):
        @functools.wraps(f)
        def inner(*args):
            return (label, f(*args))
        return inner
    return wrap

@tag("outer")
@tag("inner")
def f(x):
    return x + 1

class C:
    @property
    def p(self):
        return 2

    @p.setter
    def p(self, value):
        raise AttributeError(value)

    @staticmethod
    def s():
        return 3
"""


def load_script():
    spec = importlib.util.spec_from_file_location("mutation_undecorate", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_decorators_move_after_the_definition_and_mean_the_same():
    rewritten = load_script().undecorate(SOURCE)
    assert "@tag" not in rewritten and 'f = tag("outer")(tag("inner")(f))' in rewritten
    assert "    @p.setter" in rewritten and "    @staticmethod" in rewritten  # left as they are
    assert rewritten.count("@property") == 0 and "    p = property(p)" in rewritten
    before, after = {}, {}
    exec(compile(SOURCE, "before", "exec"), before)
    exec(compile(rewritten, "after", "exec"), after)
    assert before["f"](1) == after["f"](1) == ("outer", ("inner", 2))
    assert before["C"]().p == after["C"]().p == 2 and after["C"].s() == 3
