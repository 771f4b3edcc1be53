"""jstyle's floors: every module is placed in ORDER, imports only modules below it (no circle,
nothing upward), and no method imports another method."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jstyle"
# bottom to top; a module may import only modules listed before it. The floors: the
# foundation (errors, params), system/, image/, nets/, ops/, results (sweep workdirs), engine/,
# the objective, methods/, sweeps, cli/.
ORDER = ["errors", "params", "system", "system.interrupt", "system.files", "system.memory",
         "system.progress",
         "image", "image.clips",
         "nets", "nets.conv", "nets.vgg", "nets.weights",
         "ops", "ops.flow", "ops.masks", "ops.patches", "ops.patchmatch", "ops.fields", "ops.losses", "ops.tiles",
         "results",
         "engine", "engine.optimize", "engine.checkpoint", "engine.options", "engine.kinds",
         "engine.program", "engine.images", "engine.session", "engine.pyramid",
         "objective",
         "methods", "methods.gatys", "methods.mrf",
         "methods.fast.network", "methods.fast.data", "methods.fast.train", "methods.fast",
         "methods.analogy",
         "methods.harmonize.settings", "methods.harmonize.regions", "methods.harmonize.passes",
         "methods.harmonize",
         "methods.video.settings", "methods.video.flows", "methods.video.frames", "methods.video",
         "sweep", "cli.arguments", "cli.exits", "cli.stylise", "cli.train", "cli", "__main__"]
METHODS = [m for m in ORDER if m.startswith("methods.")]


def _imports(path: pathlib.Path) -> set[str]:
    """The jstyle modules a file imports, at any depth of the file (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jstyle"):
            base = node.module[len("jstyle."):] if node.module != "jstyle" else ""
            for alias in node.names:
                name = f"{base}.{alias.name}".strip(".")
                found.add(name if name in ORDER else base)
        elif isinstance(node, ast.Import):
            found |= {a.name[len("jstyle."):] for a in node.names if a.name.startswith("jstyle.")}
    return found - {""}


def _module_path(module: str) -> pathlib.Path:
    path = PACKAGE / (module.replace(".", "/") + ".py")
    return path if path.exists() else PACKAGE / module.replace(".", "/") / "__init__.py"


def test_every_module_is_placed_and_imports_only_modules_below_it():
    modules = {str(p.relative_to(PACKAGE).with_suffix("")).replace("/", ".").replace(
        ".__init__", "") for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert modules == set(ORDER), modules ^ set(ORDER)
    for module in ORDER:
        above = [m for m in _imports(_module_path(module))
                 if ORDER.index(m) >= ORDER.index(module)]
        assert not above, f"{module} imports {above}, which are not below it"


def test_no_method_imports_another_method():
    for module in METHODS:
        own = module.split(".")[:2]
        others = [m for m in _imports(_module_path(module))
                  if m.startswith("methods.") and m.split(".")[:2] != own]
        assert not others, f"{module} imports {others}, another method"
