"""The method framework: methods found by name or module path, flags from their Params, one
compilation for problems of one shape, named images written with one record."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jstyle import image, methods
from jstyle.engine import program
from jstyle.engine.session import Session
from jstyle.errors import InputError
from jstyle.methods import gatys, mrf

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _image(h, w, seed):
    rng = np.random.default_rng(seed)
    return image.resize(rng.uniform(size=(h // 8 + 2, w // 8 + 2, 3)).astype(np.float32), h, w)


def test_methods_are_found_by_name_and_bad_names_are_clear():
    assert [methods.get(n).__name__ for n in methods.BUILTIN] == [
        "jstyle.methods.gatys", "jstyle.methods.mrf", "jstyle.methods.fast",
        "jstyle.methods.analogy", "jstyle.methods.harmonize", "jstyle.methods.video"]
    with pytest.raises(InputError, match="unknown method 'gram'; choose one of gatys"):
        methods.get("gram")
    with pytest.raises(InputError, match="cannot import method module 'nope.nothing'"):
        methods.get("nope.nothing")
    with pytest.raises(InputError, match="is not a jstyle method: it lacks Params"):
        methods.get("jstyle.ops.losses")
    for relative in (".gatys", "..methods.gatys", "jstyle..gatys", "dir/mod.py"):
        with pytest.raises(InputError, match="is not a module path"):
            methods.get(relative)


def test_every_builtin_method_keeps_the_contract():
    assert {n: methods.contract(methods.get(n)) for n in methods.BUILTIN} == {
        n: [] for n in methods.BUILTIN}


BROKEN = {  # module source -> the words of its one-line error
    'raise KeyError("gone")': "failed while importing (KeyError: 'gone', at ",
    "import sys\nsys.exit(3)": "failed while importing (SystemExit: 3, at ",
    "import no_such_dependency_of_jstyle": "failed while importing (ModuleNotFoundError: No "
                                           "module named 'no_such_dependency_of_jstyle'",
    "x = (": "has a syntax error (",
    "Params = PRESETS = validate = 1": "it lacks Inputs, run",
    "class Params: pass\nPRESETS = {'a': (Params(), None)}\nvalidate = run = print\n"
    "Inputs = None": "its Params is not a frozen dataclass",
    "import dataclasses\n@dataclasses.dataclass\nclass Params: pass\n"
    "PRESETS = {}\nvalidate = run = print\nInputs = None": "its Params is not a frozen dataclass",
}
GOOD_PARAMS = ("import dataclasses\nfrom typing import NamedTuple\n"
               "from jstyle.engine.kinds import Image, Images, Model\n"
               "from jstyle.engine.options import RunOptions\n"
               "@dataclasses.dataclass(frozen=True)\nclass Params: pass\n"
               "class Inputs(NamedTuple):\n    content: Image\n    styles: Images\n"
               "validate = print\n"
               "def run(key, inputs, hp, opts, weights, *, session): pass\n")
BROKEN.update({
    GOOD_PARAMS + "PRESETS = {}": "its PRESETS is empty",
    GOOD_PARAMS + "PRESETS = [Params()]": "its PRESETS is not a dict",
    GOOD_PARAMS + "PRESETS = {'a': (Params(),)}": "its preset 'a' is not a pair",
    GOOD_PARAMS + "PRESETS = {'a': (RunOptions(), RunOptions())}": "its preset 'a' is not a pair",
    GOOD_PARAMS + "PRESETS = {'a': (Params(), RunOptions())}\nvalidate = 3":
        "its validate is not a function",
    GOOD_PARAMS + "PRESETS = {'a': (Params(), RunOptions())}\nOPTIONS = ('size', 'colour')":
        "its OPTIONS is not a tuple of names among",
    # the contract's INPUTS and CONTENT became the Inputs NamedTuple: its checks instead
    GOOD_PARAMS + "PRESETS = {'a': (Params(), RunOptions())}\n"
    "class Inputs(NamedTuple):\n    sound: list\n":
        "its Inputs field 'sound' has no input kind",
    GOOD_PARAMS + "PRESETS = {'a': (Params(), RunOptions())}\nOUTPUTS = ()":
        "its OUTPUTS is not a non-empty tuple",
    GOOD_PARAMS + "PRESETS = {'a': (Params(), RunOptions())}\nInputs = ('content',)":
        "its Inputs is not a NamedTuple of input kinds",
    GOOD_PARAMS + "PRESETS = {'a': (Params(), RunOptions())}\n"
    "class Inputs(NamedTuple):\n    model: Model\n":
        "its Inputs take a Model but it has no load_model(path)",
    GOOD_PARAMS + "PRESETS = {'a': (Params(), RunOptions())}\n"
    "def run(content, styles, hp, opts, weights, key=None): pass\n":
        "its run takes (content, styles, hp, opts, weights, key), not (key, inputs, hp, opts, "
        "weights, *, session)",
    GOOD_PARAMS + "PRESETS = {'a': (Params(), RunOptions())}\nRESUMABLE = 'yes'":
        "its RESUMABLE is not True or False",
})


def test_a_broken_method_module_is_one_error_naming_its_fault(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "brokenmethods").mkdir()
    (tmp_path / "brokenmethods" / "__init__.py").write_text("")
    (tmp_path / "brokenmethods" / "fine.py").write_text(
        GOOD_PARAMS + "PRESETS = {'a': (Params(), RunOptions())}")
    assert methods.get("brokenmethods.fine").PRESETS  # the contract's smallest method
    for k, (source, words) in enumerate(BROKEN.items()):
        (tmp_path / "brokenmethods" / f"m{k}.py").write_text(source + "\n")
        with pytest.raises(InputError) as e:
            methods.get(f"brokenmethods.m{k}")
        message = str(e.value)
        assert words in message and "\n" not in message, (source, message)
        assert message.count("; ") >= 1 and "Traceback" not in message


def test_help_gives_each_method_its_own_text_of_a_shared_flag():
    """--mask is analogy's choice of blend and harmonize's mask file; --method lists every
    method; the training flags say what they do in training."""
    shown = subprocess.run([sys.executable, "-m", "jstyle", "--help"],  # every method's
                           capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr
    sections = {s.split(":\n", 1)[0]: s for s in shown.stdout.split("\n\n")}
    command, analogy = sections["Flags of the command"], sections["Flags of analogy"]
    # harmonize's --mask is an input (a mask image), a flag of the command
    assert "--mask: Mask of the pasted object" in command and "hard" not in command.split(
        "--mask:")[1].splitlines()[0]
    assert "--mask: Response mask of the blend" in analogy
    assert "(default by --preset: code hard, paper sigmoid," in analogy  # not harmonize's None
    assert f"--method: Style-transfer method: one of {', '.join(methods.BUILTIN)} " in \
        shown.stdout
    training = sections[next(k for k in sections if k.startswith("Flags of jstyle train"))]
    assert "--size: Crop edge, pixels. (default: 256)" in training
    assert "--steps: Adam steps, one batch of photos each. (default: 40000)" in training
    assert "L-BFGS" not in training


@pytest.mark.parametrize("method", [gatys, mrf])
def test_same_shape_problems_with_other_data_compile_once(tiny_weights, method):
    """Three problems (other styles, other weights) of one shape run on one program."""
    hp, opts = method.PRESETS[next(iter(method.PRESETS))]
    opts = dataclasses.replace(opts, size=48, steps=2, pyramid_levels=1, tol=0.0)
    content = _image(40, 56, 1)
    compiled = program.compile_program(method.loss_terms, tiny_weights.convention, opts)
    before = compiled.chunk._cache_size()
    chunks, images = set(), []
    for seed, weight in ((2, 1.0), (3, 5.0), (4, 0.5)):
        problem = method.setup(content, [_image(64, 64, seed)],
                               dataclasses.replace(hp, content_weight=weight), opts,
                               tiny_weights, jax.random.key(0))
        state = problem.chunk(problem.state, jnp.int32(2), problem.data)
        problem.terms(state.image, problem.data)
        chunks.add(id(problem.chunk))
        images.append(np.asarray(state.image))
    assert chunks == {id(compiled.chunk)}
    assert compiled.chunk._cache_size() == before + 1 and compiled.terms._cache_size() == 1
    assert np.abs(images[0] - images[1]).max() > 1e-3  # the data did reach the program


def test_sweep_batch_axes_come_from_the_data_type():
    assert gatys.Data.sweep_axes() == gatys.Data(None, None, None, 0)
    assert mrf.Data.sweep_axes().hp == 0


def test_a_run_starts_from_an_array_and_seeds_its_own_key(tiny_weights):
    content, style = _image(40, 56, 1), _image(64, 64, 2)
    opts = gatys.RunOptions(size=48, steps=2, print_every=0, init="noise", seed=3)
    # the key is now required: the seed's key (what the command passes) is key(3)
    run = lambda key: gatys.run(key, gatys.Inputs(content, [style]), gatys.GatysParams(), opts,
                                tiny_weights, session=Session(progress=False))
    seeded, keyed = run(jax.random.key(opts.seed)), run(jax.random.key(3))
    np.testing.assert_array_equal(seeded.image, keyed.image)
    start = np.full((20, 28, 3), 0.5, np.float32)
    zero = dataclasses.replace(opts, steps=1, learning_rate=1e-6, optimizer="adam")
    from_array = gatys.run(jax.random.key(opts.seed), gatys.Inputs(content, [style], init=start),
                           gatys.GatysParams(), zero, tiny_weights,
                           session=Session(progress=False))
    np.testing.assert_allclose(from_array.images["output"], 0.5, atol=1 / 255)
    assert set(from_array.images) == {"output"}


TINY_METHOD = '''
"""A test method outside jstyle: the content tinted towards the style's mean colour."""
import dataclasses
import numpy as np
from jstyle import image
from jstyle.errors import InputError
from jstyle.params import field
from typing import NamedTuple
from jstyle.engine.kinds import Image, Images
from jstyle.engine.options import RunOptions

OPTIONS = ("size",)
OUTPUTS = ("output", "b")


@dataclasses.dataclass(frozen=True)
class Params:
    tint: float = field(0.5, "How far towards the style's mean colour.")
    mix_layers: tuple = field(("a", "b"), "Names, to test layer lists.", static=True)
    mix_layer_weights: tuple = field((2.0, 3.0), "One weight per name.")


PRESETS = {"half": (Params(), RunOptions(size=32)), "full": (Params(tint=1.0), RunOptions(size=32))}


def validate(hp, opts, num_styles):
    if not 0 <= hp.tint <= 1:
        raise InputError(f"--tint={hp.tint} must be in [0, 1]; give a fraction")


class Inputs(NamedTuple):
    content: Image
    styles: Images


def run(key, inputs, hp, opts, weights, *, session):
    photo = image.resize_to_edge(inputs.content, opts.size)
    mean = inputs.styles[0].reshape(-1, 3).mean(0)
    out = (1 - hp.tint) * photo + hp.tint * mean
    session.begin({"method": "tinted", "tint": hp.tint,
                   "mix": dict(zip(hp.mix_layers, hp.mix_layer_weights))}, total=0)
    return session.result({"output": out.astype(np.float32),
                           "b": np.broadcast_to(mean, photo.shape).astype(np.float32)},
                          steps=0)
'''


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A package `outside_pkg` with the method module `tinted`, and an environment that finds
    it."""
    root = tmp_path_factory.mktemp("outside")
    (root / "outside_pkg").mkdir()
    (root / "outside_pkg" / "__init__.py").write_text("")
    (root / "outside_pkg" / "tinted.py").write_text(textwrap.dedent(TINY_METHOD))
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return root, env


def test_a_method_outside_jstyle_gets_flags_runs_and_joins_the_comparison(
        outside, tmp_path, vgg_weights):
    root, env = outside
    jstyle = lambda *args: subprocess.run([sys.executable, "-m", "jstyle", *args], env=env,
                                          cwd=tmp_path, capture_output=True, text=True,
                                          timeout=600)
    shown = jstyle("--method=outside_pkg.tinted", "--help")
    assert shown.returncode == 0 and "Flags of outside_pkg.tinted:" in shown.stdout
    assert "--tint: How far towards the style's mean colour. (default by --preset: half 0.5, " \
           "full 1.0)" in shown.stdout
    content, style = image.sample_paths()
    done = jstyle("--method=outside_pkg.tinted", f"--content={content}", f"--style={style}",
                  "--tint=0.25", f"--output={tmp_path / 'out.png'}")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["tint"] == 0.25 and record["preset"] == "half"
    assert record["mix"] == {"a": 2.0, "b": 3.0}  # the preset's layer weights stay
    relayered = jstyle("--method=outside_pkg.tinted", f"--content={content}",
                       f"--style={style}", "--mix_layers=c", f"--output={tmp_path / 'c.png'}")
    assert relayered.returncode == 0, relayered.stderr
    assert json.loads((tmp_path / "c.json").read_text())["mix"] == {"c": 1.0}
    assert record["images"] == {"output": str(tmp_path / "out.png"),
                                "b": str(tmp_path / "out_b.png")}
    assert Image.open(tmp_path / "out_b.png").size == Image.open(tmp_path / "out.png").size
    for args, message in ((["--tint=2"], "--tint=2.0 must be in [0, 1]"),
                          (["--steps=3"], "--steps does not apply to --method=outside_pkg"),
                          (["--preset=cnnmrf"], "not a preset of --method=outside_pkg.tinted")):
        bad = jstyle("--method=outside_pkg.tinted", f"--content={content}", f"--style={style}",
                     f"--output={tmp_path / 'bad.png'}", *args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert message in bad.stderr
    folders = tmp_path / "content", tmp_path / "style"
    for folder, path in zip(folders, (content, style)):
        folder.mkdir()
        (folder / path.name).write_bytes(path.read_bytes())
    compare = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "compare_methods.py"),
         f"--workdir={tmp_path / 'compare'}", f"--content_dir={folders[0]}",
         f"--style_dir={folders[1]}", "--size=32", "--methods=outside_pkg.tinted"],
        env=env, capture_output=True, text=True, timeout=600)
    assert compare.returncode == 0, compare.stderr[-2000:]
    lines = [json.loads(l) for l in (tmp_path / "compare" / "metrics.jsonl").read_text()
             .splitlines()]
    assert [l["method"] for l in lines] == ["content", "style", "outside_pkg.tinted"]
    assert 0 < lines[-1]["content_distance"] < np.inf
