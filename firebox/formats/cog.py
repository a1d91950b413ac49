"""A Replicate Cog package (cog.yaml and its predictor) as a firebox App, unchanged.

cog.yaml's build section becomes the image: the server's Python (build.python_version must be
its version), build.system_packages with apt, build.python_packages or python_requirements with
uv, the cog SDK itself, build.run's commands and `environment`. The package is mounted at /src.
The App has one class, CogPredictor (formats/cog_server.py), which runs Cog's own server
(coglet) in each container: its HTTP API is the class's web endpoint, and its predictions are
what the Replicate API of the control plane calls.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from ..exception import InvalidError
from ..sdk.app import App
from ..sdk.image import Image
from ..wire import settings
from .cog_server import REMOTE_DIR, CogPredictor
from .options import Options, read_yaml

COG_SDK = "cog==0.23.1"  # the SDK (and its server, coglet) installed into every Cog image
BUILD_KEYS = {"python_version", "python_packages", "python_requirements", "system_packages",
              "run", "gpu", "cuda", "cudnn", "cog_runtime", "pre_install"}
TOP_KEYS = {"build", "predict", "train", "image", "concurrency", "environment", "weights",
            "tests"}
DEFAULT_TIMEOUT = 1800  # seconds: Replicate's prediction time limit


def read_config(path: Path) -> dict[str, Any]:
    file = path / "cog.yaml"
    config = read_yaml(file, "build:, predict:, ...", TOP_KEYS)
    build = config.get("build") or {}
    unknown = sorted(set(build) - BUILD_KEYS)
    if unknown:
        raise InvalidError(f"{file}: firebox does not know build.{', build.'.join(unknown)}.")
    return config


def _reference(path: Path, config: dict[str, Any], key: str) -> str | None:
    ref = config.get(key)
    if ref is None:
        return None
    file, sep, name = str(ref).partition(":")
    if not sep or not name or not file.endswith(".py"):
        raise InvalidError(f"cog.yaml's {key}: '{ref}' should be 'file.py:Name'.")
    if not (path / file).is_file():
        raise InvalidError(f"cog.yaml's {key} names {file}, which {path} does not have.")
    return str(ref)


def build_image(path: Path, config: dict[str, Any]) -> Image:
    build = config.get("build") or {}
    wanted = build.get("python_version")
    if wanted is not None:
        host = ".".join(platform.python_version_tuple()[:2])
        if ".".join(str(wanted).split(".")[:2]) != host:
            raise InvalidError(
                f"cog.yaml's build.python_version is {wanted}, and this server's images use its "
                f"own Python, {host}: set build.python_version: \"{host}\".")
    image = Image.debian_slim()
    if build.get("system_packages"):
        image = image.apt_install(*build["system_packages"])
    packages = [str(p) for p in build.get("python_packages") or []]
    requirements = build.get("python_requirements")
    if requirements:
        if not (path / requirements).is_file():
            raise InvalidError(f"cog.yaml's build.python_requirements names {requirements}, "
                               f"which {path} does not have.")
        image = image.pip_install(COG_SDK, *packages,
                                  requirements=[str(path / requirements)])
    else:
        image = image.pip_install(COG_SDK, *packages)
    for command in build.get("run") or []:
        text = command.get("command") if isinstance(command, dict) else command
        if not isinstance(text, str):
            raise InvalidError(f"cog.yaml's build.run has {command!r}; give each command as a "
                               "string or {command: ...}.")
        image = image.run_commands(text)
    env = {}
    for item in config.get("environment") or []:
        name, sep, value = str(item).partition("=")
        if not sep or not name:
            raise InvalidError(f"cog.yaml's environment has '{item}'; write NAME=value.")
        env[name] = value
    if env:
        image = image.env(env)
    return image.add_local_dir(path, REMOTE_DIR)


def build_app(path: Path, name: str, options: Options) -> App:
    config = read_config(path)
    predict = _reference(path, config, "predict")
    if predict is None:
        raise InvalidError(f"{path}/cog.yaml has no predict: key; name the predictor, like "
                           "predict: \"predict.py:Predictor\".")
    train = _reference(path, config, "train")
    concurrency = (config.get("concurrency") or {}).get("max")
    function_options = options.function_options(DEFAULT_TIMEOUT)
    if concurrency is not None and "max_inputs" not in function_options:
        function_options["max_inputs"] = int(concurrency)
    if (config.get("build") or {}).get("gpu") and "gpu" not in function_options:
        function_options["gpu"] = "any"
    env = {settings.COG_PREDICT.name: predict,
           settings.COG_CONCURRENCY.name: str(function_options.get("max_inputs", 1)),
           **options.env}
    if train:
        env[settings.COG_TRAIN.name] = train
    app = App(name, include_source=False)  # the code is the package, mounted at /src
    image = options.image(path, build_image(path, config))
    app.cls(image=image, serialized=True, env=env, secrets=options.secret_objects(),
            **function_options)(CogPredictor)
    return app
