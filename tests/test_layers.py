"""The package's layers point one way, read from the source (nothing is imported): the library never imports a
command or a callback, callbacks import the library only, and the maths, samplers and network need neither
Lightning nor Hydra nor W&B."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffusion_lab"
COMMANDS = ("diffusion_lab.cli", "diffusion_lab.train", "diffusion_lab.sample", "diffusion_lab.evaluate",
            "diffusion_lab.report", "diffusion_lab.viz.__main__", "diffusion_lab.metrics.feature_net.__main__")
CALLBACKS = ("diffusion_lab.callbacks",)
NOTEBOOK_SAFE = ("diffusion_lab.diffusion", "diffusion_lab.models", "diffusion_lab.sampling")
FRAMEWORKS = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf", "wandb")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_in(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(package modules imported anywhere in the file, top-level names of other packages imported at module level)."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    own, external = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module_name(path).split(".")
                base = ".".join(here[: len(here) - node.level + is_package] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            if name.startswith("diffusion_lab"):
                own.add(name)
            elif node in tree.body:
                external.add(name.split(".")[0])
    return own, external


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {m: imports(p) for m, p in MODULES.items()}


def resolved(names: set[str]) -> set[str]:
    """The package modules that imported names belong to (`diffusion_lab.sampling.DDIMSampler` → the package)."""
    out = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def test_every_module_is_placed_in_a_layer():
    assert {m for m in MODULES if is_in(m, COMMANDS)} >= {"diffusion_lab.cli", "diffusion_lab.viz.__main__"}
    assert "diffusion_lab.viz" not in {m for m in MODULES if is_in(m, COMMANDS)}  # the figures are library


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not is_in(m, COMMANDS)))
def test_the_library_and_the_callbacks_never_import_a_command(module):
    upward = {m for m in resolved(GRAPH[module][0]) if is_in(m, COMMANDS)}
    if not is_in(module, CALLBACKS):
        upward |= {m for m in resolved(GRAPH[module][0]) if is_in(m, CALLBACKS)}
    assert not upward, f"{module} imports {sorted(upward)}"


def test_the_maths_samplers_and_network_need_no_framework():
    seen, todo = set(), [m for m in MODULES if is_in(m, NOTEBOOK_SAFE)]
    while todo:  # everything they import, directly or not
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += resolved(GRAPH[module][0])
    found = {m: sorted(GRAPH[m][1] & set(FRAMEWORKS)) for m in seen if GRAPH[m][1] & set(FRAMEWORKS)}
    assert not found and "diffusion_lab.rules" in seen, found
