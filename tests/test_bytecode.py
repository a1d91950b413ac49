"""The server writes bytecode for what containers import (firebox/backends/bytecode.py): a
module imported without any (as under PYTHONDONTWRITEBYTECODE) gets it, so a container does
not compile it again at every cold start."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from firebox.backends import bytecode


def test_modules_imported_without_bytecode_get_it(tmp_path, monkeypatch):
    package = tmp_path / "fresh_dependency"
    package.mkdir()
    (package / "__init__.py").write_text("from . import inner\n")
    (package / "inner.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    module = importlib.import_module("fresh_dependency")
    try:
        caches = [importlib.util.cache_from_source(str(package / name))
                  for name in ("__init__.py", "inner.py")]
        assert module.inner.VALUE == 7 and not any(os.path.exists(c) for c in caches)
        bytecode.compile_runtime()
        assert all(os.path.exists(c) for c in caches)
        assert bytecode.RUNTIME in sys.modules  # and what a container imports was imported
    finally:
        for name in ("fresh_dependency", "fresh_dependency.inner"):
            sys.modules.pop(name, None)
