"""The method contract (jstyle.methods) for every built-in method and an outside one, and the
size limits that keep jstyle's rooms small: no file over 500 lines, no function over 80 lines of
code, no method's run over 60."""

import ast
import inspect
import pathlib
import sys
import textwrap

import pytest

from jstyle import methods
from jstyle.engine import kinds

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jstyle"
OUTSIDE = '''
"""An outside method: the content tinted towards the style's mean colour."""
import dataclasses
from typing import NamedTuple
import numpy as np
from jstyle import image
from jstyle.engine.kinds import Image, Images
from jstyle.engine.options import RunOptions
from jstyle.params import field

OPTIONS = ("size",)


@dataclasses.dataclass(frozen=True)
class Params:
    tint: float = field(0.5, "How far towards the style's mean colour.")


PRESETS = {"half": (Params(), RunOptions(size=32))}


class Inputs(NamedTuple):
    content: Image
    styles: Images


def validate(hp, opts, num_styles):
    pass


def run(key, inputs, hp, opts, weights, *, session):
    photo = image.resize_to_edge(inputs.content, opts.size)
    out = (1 - hp.tint) * photo + hp.tint * inputs.styles[0].reshape(-1, 3).mean(0)
    session.begin({"method": "tinted", "tint": hp.tint}, total=0)
    return session.result({"output": out.astype(np.float32)})
'''


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    root = tmp_path_factory.mktemp("outside")
    (root / "api_outside").mkdir()
    (root / "api_outside" / "__init__.py").write_text("")
    (root / "api_outside" / "tinted.py").write_text(textwrap.dedent(OUTSIDE))
    sys.path.insert(0, str(root))
    yield "api_outside.tinted"
    sys.path.remove(str(root))


@pytest.mark.parametrize("name", [*methods.BUILTIN, "outside"])
def test_every_method_keeps_the_contract(name, request):
    module = methods.get(request.getfixturevalue("outside") if name == "outside" else name)
    assert methods.contract(module) == []
    parameters = list(inspect.signature(module.run).parameters.values())
    assert [p.name for p in parameters[:5]] == ["key", "inputs", "hp", "opts", "weights"]
    assert parameters[0].default is inspect.Parameter.empty  # the key is required, first
    assert [p.name for p in parameters if p.kind == p.KEYWORD_ONLY] == ["session"]
    declared = kinds.declared(module.Inputs)
    assert declared and all(kind in kinds.KINDS for kind, _ in declared.values()), declared
    assert module.PRESETS and all(isinstance(hp, module.Params)
                                  for hp, _ in module.PRESETS.values())


def test_the_contract_check_names_a_key_that_is_not_first_and_an_undeclared_input(outside):
    module = methods.get(outside)
    bad_run = type(module)("bad_run")
    bad_run.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    bad_run.run = lambda inputs, hp, opts, weights, key=None, **unused: None
    assert any("not (key, inputs" in p for p in methods.contract(bad_run))
    from typing import NamedTuple

    class Untyped(NamedTuple):
        content: object
    bad_run.run, bad_run.Inputs = module.run, Untyped
    assert any("'content' has no input kind" in p for p in methods.contract(bad_run))
    bad_run.Inputs, bad_run.PRESETS = module.Inputs, {}
    assert any("PRESETS is empty" in p for p in methods.contract(bad_run))


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if (node.body and isinstance(node.body[0], ast.Expr) and
                                     isinstance(node.body[0].value, ast.Constant)) else node.body
            yield node, (body[-1].end_lineno - body[0].lineno + 1) if body else 0


def test_no_file_over_500_lines_no_function_over_80_no_method_run_over_60():
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) <= 500, f"{path} has {len(source.splitlines())} lines"
        for node, length in _functions(ast.parse(source)):
            assert length <= 80, f"{path}:{node.lineno} {node.name} has {length} lines"
    for name in methods.BUILTIN:
        run = methods.get(name).run
        node = ast.parse(textwrap.dedent(inspect.getsource(run))).body[0]
        length = next(n for f, n in _functions(node) if f is node)
        assert length <= 60, f"{name}.run has {length} lines"
