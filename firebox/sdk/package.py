"""The user's code as content-addressed files: the entry module and the local modules it uses,
uploaded once per content and fetched by containers from the control plane."""

from __future__ import annotations

import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..exception import InvalidError
from ..wire.digests import sha256

MAX_FILES = 2000
MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CodeBundle:
    module: str  # the module name containers import
    files: dict[str, bytes]  # path relative to the code root -> content

    @property
    def manifest(self) -> dict[str, str]:
        return {path: sha256(data) for path, data in self.files.items()}


def module_name(module: ModuleType) -> str:
    """The name a container imports the module by: scripts run as __main__ use their file stem."""
    if module.__name__ == "__main__":
        file = getattr(module, "__file__", None)
        if not file:
            raise InvalidError(
                "Functions defined in an interactive session need serialized=True."
            )
        return Path(file).stem
    return module.__name__


def _excluded_roots() -> list[Path]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(path)
    return [Path(r).resolve() for r in roots]


def collect(module: ModuleType) -> CodeBundle:
    name = module_name(module)
    file = getattr(module, "__file__", None)
    if not file:
        raise InvalidError(f"Module {name} has no source file; use serialized=True.")
    entry = Path(file).resolve()
    root = entry.parent
    for _ in range(name.count(".")):
        root = root.parent
    excluded = _excluded_roots()
    files: dict[str, bytes] = {}

    def add(path: Path) -> None:
        rel = path.relative_to(root).as_posix()
        if rel not in files and path.suffix == ".py" and path.is_file():
            files[rel] = path.read_bytes()

    add(entry)
    package_dir = entry.parent
    while package_dir != root and package_dir.is_relative_to(root):
        add(package_dir / "__init__.py")
        package_dir = package_dir.parent
    for mod_name, mod in list(sys.modules.items()):
        mod_file = getattr(mod, "__file__", None)
        if not mod_file or mod_name == "firebox" or mod_name.startswith("firebox."):
            continue
        path = Path(mod_file).resolve()
        if not path.is_relative_to(root) or "site-packages" in path.parts:
            continue
        if any(path.is_relative_to(r) for r in excluded if root != r and r != Path("/")):
            continue
        add(path)
    total = sum(len(d) for d in files.values())
    if len(files) > MAX_FILES or total > MAX_BYTES:
        raise InvalidError(
            f"The code under {root} is {len(files)} files, {total / 1e6:.0f} MB: too much to "
            "upload; move the app file into a smaller directory."
        )
    return CodeBundle(module=name, files=files)
