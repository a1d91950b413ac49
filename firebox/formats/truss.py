"""A Baseten Truss (config.yaml and model/model.py) as a firebox App, unchanged.

config.yaml becomes the image (requirements or requirements_file, system_packages,
build_commands, environment_variables; python_version must be the server's) and the class's
options (resources: cpu, memory, accelerator or use_gpu; runtime.predict_concurrency). The
package is mounted at /app, as in Truss's images. The App has one class, TrussModel
(formats/truss_server.py), which loads the model and serves Truss's server API.
"""

from __future__ import annotations

import ast
import platform
import re
from pathlib import Path
from typing import Any

from ..exception import InvalidError
from ..sdk.app import App
from ..sdk.image import Image
from ..wire import settings
from .options import Options, read_yaml
from .truss_server import REMOTE_DIR, TrussModel

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")  # as @model_api takes
KEYS = {"model_name", "model_class_name", "model_module_dir", "model_class_filename",
        "data_dir", "bundled_packages_dir", "external_package_dirs", "python_version",
        "requirements", "requirements_file", "system_packages", "environment_variables",
        "secrets", "resources", "runtime", "model_metadata", "build_commands", "description",
        "model_framework", "model_type", "input_type", "spec_version", "examples_filename",
        "apply_library_patches", "live_reload", "base_image", "model_cache",
        "external_data", "build", "docker_server", "trt_llm", "training_checkpoints"}
NOT_SERVED = ("docker_server", "trt_llm", "base_image", "external_data", "model_cache",
              "external_package_dirs", "training_checkpoints")
DEFAULT_TIMEOUT = 1800


def read_config(path: Path) -> dict[str, Any]:
    file = path / "config.yaml"
    config = read_yaml(file, "model_name:, ...", KEYS)
    for key in NOT_SERVED:
        if config.get(key):
            raise InvalidError(f"{file}: {key} is not supported by firebox yet; remove it to "
                               "deploy the model with its Python model class.")
    return config


def build_image(path: Path, config: dict[str, Any]) -> Image:
    wanted = config.get("python_version")
    if wanted:
        host = "py" + "".join(platform.python_version_tuple()[:2])
        if str(wanted) != host:
            raise InvalidError(f"config.yaml's python_version is {wanted}, and this server's "
                               f"images use its own Python: set python_version: {host}.")
    image = Image.debian_slim()
    if config.get("system_packages"):
        image = image.apt_install(*config["system_packages"])
    requirements = [str(r) for r in config.get("requirements") or []]
    file = config.get("requirements_file")
    if file and not (path / file).is_file():
        raise InvalidError(f"config.yaml's requirements_file names {file}, which {path} does "
                           "not have.")
    if requirements or file:
        image = image.pip_install(*requirements,
                                  requirements=[str(path / file)] if file else None)
    for command in config.get("build_commands") or []:
        image = image.run_commands(str(command))
    env = {str(k): str(v) for k, v in (config.get("environment_variables") or {}).items()}
    if env:
        image = image.env(env)
    return image.add_local_dir(path, REMOTE_DIR)


def resources(config: dict[str, Any]) -> dict[str, Any]:
    """@app.cls options of config.yaml's resources and runtime."""
    res = config.get("resources") or {}
    out: dict[str, Any] = {}
    if res.get("cpu"):
        text = str(res["cpu"])
        out["cpu"] = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    if res.get("memory"):
        out["memory"] = _mib(str(res["memory"]))
    if res.get("accelerator"):
        out["gpu"] = str(res["accelerator"])
    elif res.get("use_gpu"):
        out["gpu"] = "any"
    concurrency = (config.get("runtime") or {}).get("predict_concurrency")
    if concurrency:
        out["max_inputs"] = int(concurrency)
    return out


def _mib(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?i?B?", text.strip())
    if match is None:
        raise InvalidError(f"config.yaml's resources.memory is '{text}'; write it like 512Mi "
                           "or 2Gi.")
    scale = {None: 1 / (1024 * 1024), "K": 1000 / 1024 ** 2, "Ki": 1 / 1024,
             "M": 1000 ** 2 / 1024 ** 2, "Mi": 1, "G": 1000 ** 3 / 1024 ** 2, "Gi": 1024,
             "T": 1000 ** 4 / 1024 ** 2, "Ti": 1024 ** 2}[match.group(2)]
    return max(1, round(float(match.group(1)) * scale))


def build_app(path: Path, name: str, options: Options) -> App:
    config = read_config(path)
    module_dir = config.get("model_module_dir", "model")
    file = config.get("model_class_filename", "model.py")
    if not (path / module_dir / file).is_file():
        raise InvalidError(f"{path} has no {module_dir}/{file}: a Truss's model class lives "
                           "there (model_module_dir and model_class_filename in config.yaml).")
    function_options = {**resources(config), **options.function_options(DEFAULT_TIMEOUT)}
    app = App(name, include_source=False)  # the code is the package, mounted at /app
    image = options.image(path, build_image(path, config))
    env = {settings.TRUSS_CONCURRENCY.name: str(function_options.get("max_inputs", 1)),
           **options.env}
    served = app.cls(image=image, serialized=True, env=env, secrets=options.secret_objects(),
                     **function_options)(TrussModel)
    if MODEL_NAME.match(name) and _serves_openai(path / module_dir / file):  # /v1 routes it
        web = served._function._spec["methods"]["http"]["web"]
        web["model"] = {"names": [name], "adapters": None, "routing": "prefix"}
    return app


def _serves_openai(model_file: Path) -> bool:
    """Whether the model's source defines one of the OpenAI-shaped methods a Truss may have."""
    try:
        tree = ast.parse(model_file.read_text())
    except (SyntaxError, UnicodeDecodeError):
        return False  # the container reports what is wrong with it
    names = {"chat_completions", "completions", "embeddings"}
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names
               for node in ast.walk(tree))
