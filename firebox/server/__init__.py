"""The control plane: one asyncio process that owns all state and schedules all work.

Its packages are the `server` extra's (`pip install 'firebox[server]'`); a client's install
lacks them, so this says which are missing in a line instead of failing at the first import."""

from importlib.util import find_spec

from ..exception import ServerNotInstalledError

# The modules of the `server` extra in pyproject.toml (tests/test_packaging.py holds the two equal).
PACKAGES = ("a2wsgi", "aiosqlite", "alembic", "asyncpg", "cryptography", "fastapi", "greenlet",
            "httptools", "pydantic", "sqlalchemy", "starlette", "uv", "uvicorn")


def _installed(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except ImportError:  # an import hook that refuses it
        return False


_missing = [name for name in PACKAGES if not _installed(name)]
if _missing:
    more = len(_missing) - 3
    named = ", ".join(_missing[:3]) + (f" and {more} more" if more > 0 else "")
    raise ServerNotInstalledError(
        f"The firebox server's packages are not installed here ({named} missing): "
        "pip install 'firebox[server]'."
    )
