"""The layers' import rules (docs/architecture.md), read from the source with ast, function-local imports included.

verify/ imports nothing of linfdist outside itself; kernels/ nothing outside itself; core (the
top-level linfdist modules) neither the zoo, export, workflows nor the CLI; export and the zoo
not each other, nor the verifier, workflows or CLI; workflows everything but the CLI. No module
imports another module's private (underscore) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: source folder → the package it is installed as
FOLDERS = {"linfdist": "linfdist", "kernels": "linfdist.kernels", "export": "linfdist.export",
           "verify": "linfdist.verify", "zoo": "linfdist.zoo"}
LAYERS = ("kernels", "verify", "core", "export", "zoo", "workflows", "cli")
ALLOWED = {
    "kernels": {"kernels"},
    "verify": {"verify"},
    "core": {"core", "kernels", "verify"},
    "export": {"export", "core", "kernels"},
    "zoo": {"zoo", "core"},
    "workflows": {"workflows", "core", "kernels", "verify", "export", "zoo"},
    "cli": set(LAYERS),
}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[0] in FOLDERS and folder == "linfdist":  # a stray nested copy: not ours
                continue
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


def layer(module: str) -> str:
    for prefix, name in (("linfdist.kernels", "kernels"), ("linfdist.verify", "verify"),
                         ("linfdist.export", "export"), ("linfdist.zoo", "zoo"),
                         ("linfdist.workflows", "workflows"), ("linfdist.cli", "cli"), ("linfdist.__main__", "cli")):
        if module == prefix or module.startswith(prefix + "."):
            return name
    return "core"


def imports(path: Path, module: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names taken from it) for every import in a file, at any depth."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub, []) if sub in MODULES else (node.lineno, base, [alias.name]))
    return [(line, name, names) for line, name, names in found if name == "linfdist" or name.startswith("linfdist.")]


def test_the_rules_see_every_layer():
    assert {layer(m) for m in MODULES} == set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module):
    mine = layer(module)
    bad = [f"line {line}: {name} ({layer(name)})" for line, name, _ in imports(MODULES[module], module)
           if layer(name) not in ALLOWED[mine]]
    assert not bad, f"{module} ({mine}) may import only {sorted(ALLOWED[mine])}: " + "; ".join(bad)


def private_uses(path: Path, module: str) -> list[str]:
    """Another module's underscore names this file takes: imported by name, or read as module._name."""
    bad = [f"line {line}: {name}.{n}" for line, name, names in imports(path, module)
           for n in names if n.startswith("_") and not n.startswith("__") and name != module]
    tree = ast.parse(path.read_text(), str(path))
    bound = {}  # local name → the linfdist module it is
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                full = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
                if full in MODULES and full != module:
                    bound[alias.asname or alias.name.split(".")[0] if isinstance(node, ast.Import) else
                          alias.asname or alias.name] = full
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            bad.append(f"line {node.lineno}: {bound[node.value.id]}.{node.attr}")
    return bad


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_takes_another_modules_private_names(module):
    bad = private_uses(MODULES[module], module)
    assert not bad, f"{module} uses private names of other modules: " + "; ".join(bad)
