"""A RunPod serverless worker package (a handler file that calls `runpod.serverless.start`,
its requirements.txt, optionally a Dockerfile) as a firebox App, unchanged.

The package's directory is mounted at /pkg in each container; its requirements become the
image's pip layer. The App has one class, RunpodWorker (formats/runpod_worker.py), that runs the
handler file as an unmodified worker and feeds it firebox inputs as RunPod jobs; the endpoint
API that RunPod's clients call is the control plane's (server/gateways/runpod.py).
"""

from __future__ import annotations

from pathlib import Path

from ..exception import InvalidError
from ..sdk.app import App
from ..sdk.image import Image
from ..wire import settings
from .options import Options
from .runpod_worker import RunpodWorker

REMOTE_DIR = "/pkg"
# Where RunPod's templates keep the handler and the requirements, in the order looked at.
HANDLER_NAMES = ("handler.py", "rp_handler.py", "src/handler.py", "src/rp_handler.py")
REQUIREMENTS = ("requirements.txt", "builder/requirements.txt", "src/requirements.txt")
START_CALL = "serverless.start("
DEFAULT_TIMEOUT = 600  # seconds: RunPod's default executionTimeout


def is_package(path: Path) -> bool:
    """Whether path holds a RunPod worker: a Python file that starts one."""
    return find_handler(path) is not None


def find_handler(path: Path) -> Path | None:
    """The handler file: the first of RunPod's usual names that starts a worker, else the
    only Python file (at the top or in src/) that does."""
    for name in HANDLER_NAMES:
        candidate = path / name
        if candidate.is_file() and START_CALL in candidate.read_text(errors="replace"):
            return candidate
    starting = [p for p in sorted([*path.glob("*.py"), *path.glob("src/*.py")])
                if START_CALL in p.read_text(errors="replace")]
    return starting[0] if len(starting) == 1 else None


def build_app(path: Path, name: str, options: Options) -> App:
    """The firebox App of the RunPod worker package at path."""
    handler = options.handler_path(path) or find_handler(path)
    if handler is None:
        raise InvalidError(
            f"No RunPod handler in {path}: a worker's handler file calls "
            "runpod.serverless.start({'handler': ...}); name it with --handler FILE.")
    if START_CALL not in handler.read_text(errors="replace"):
        raise InvalidError(f"{handler} does not call runpod.serverless.start(...): it would "
                           "never ask for a job.")
    image = options.image(path, Image.debian_slim())
    for rel in REQUIREMENTS:
        if (path / rel).is_file() and not options.dockerfile:
            image = image.pip_install_from_requirements(str(path / rel))
            break
    image = image.add_local_dir(path, REMOTE_DIR)
    app = App(name, include_source=False)  # the code is the package, mounted at /pkg
    remote_handler = f"{REMOTE_DIR}/{handler.relative_to(path).as_posix()}"
    app.cls(image=image, serialized=True, secrets=options.secret_objects(),
            env={settings.RUNPOD_HANDLER.name: remote_handler, **options.env},
            **options.function_options(DEFAULT_TIMEOUT))(RunpodWorker)
    return app
