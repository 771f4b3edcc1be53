"""jstyle's modules import only modules below them: no circle, no method importing another."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jstyle"
# bottom to top; a module may import only modules listed before it
ORDER = ["errors", "interrupt", "files", "memory", "params", "progress", "conv", "image", "clips",
         "flow", "vgg", "weights", "masks", "patches", "losses", "tiles", "optimize", "results",
         "transform_net", "train", "runs", "objective", "methods", "methods.gatys",
         "methods.mrf", "methods.fast", "methods.analogy", "methods.harmonize", "methods.video",
         "sweep", "cli", "__main__"]


def _imports(path: pathlib.Path) -> set[str]:
    """The jstyle modules a file imports, at any depth of the file (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jstyle"):
            base = node.module[len("jstyle."):] if node.module != "jstyle" else ""
            for alias in node.names:
                name = f"{base}.{alias.name}".strip(".") if not base or base == "methods" \
                    else base
                found.add(name if name in ORDER else base)
        elif isinstance(node, ast.Import):
            found |= {a.name[len("jstyle."):] for a in node.names if a.name.startswith("jstyle.")}
    return found - {""}


def test_every_module_is_placed_and_imports_only_modules_below_it():
    modules = {str(p.relative_to(PACKAGE).with_suffix("")).replace("/", ".").replace(
        ".__init__", "") for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert modules == set(ORDER), modules ^ set(ORDER)
    for module in ORDER:
        path = PACKAGE / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = PACKAGE / module.replace(".", "/") / "__init__.py"
        above = [m for m in _imports(path) if ORDER.index(m) >= ORDER.index(module)]
        assert not above, f"{module} imports {above}, which are not below it"
