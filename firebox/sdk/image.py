"""Image: the environment a function's containers run in, described as a list of build steps
(Python packages, Debian packages, commands, files) that the control plane turns into cached,
content-addressed layers. There is no Docker: the base is this machine's own system, or an
image pulled from a registry (from_registry, from_dockerfile's FROM), which is then the
container's whole root."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .. import _sync
from ..exception import InvalidError, NotSupportedYet
from ..wire.digests import sha256
from . import dockerfile
from .context import is_local
from .runner import build_image
from .secret import Secret

MAX_LOCAL_FILES = 5000


def _host_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _strings(values: Sequence[Any], what: str) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, list | tuple):
            out += _strings(v, what)
        elif isinstance(v, str):
            if v.strip():
                out.append(v)
        else:
            raise InvalidError(f"{what} takes strings, not {type(v).__name__}.")
    return out


def _absolute(remote: str, what: str) -> str:
    path = PurePosixPath(remote)
    if not path.is_absolute():
        raise InvalidError(f"{what}: the remote path {remote!r} must be absolute, like /root/x.")
    if ".." in path.parts:
        raise InvalidError(f"{what}: the remote path {remote!r} may not contain '..'.")
    return str(path)


class Image:
    """An immutable description of an environment; each method returns a new Image."""

    def __init__(self, steps: tuple[dict[str, Any], ...] = (),
                 mounts: tuple[dict[str, Any], ...] = (),
                 blobs: dict[str, bytes] | None = None, registry_secret: Any = None) -> None:
        self._steps = steps
        self._mounts = mounts  # copy=False files: added at container start, after every layer
        self._blobs = dict(blobs or {})
        self._registry_secret = registry_secret  # from_registry(secret=): resolved at build

    def __repr__(self) -> str:
        return f"<firebox.Image {len(self._steps)} steps, {len(self._mounts)} local adds>"

    # ---- constructors ----------------------------------------------------------------------

    @staticmethod
    def debian_slim(python_version: str | None = None) -> Image:
        """This machine's system and Python (firebox builds without Docker, on the host's
        Debian): a python_version other than the host's minor version is an error."""
        if python_version is not None:
            wanted = ".".join(str(python_version).split(".")[:2])
            if wanted != _host_python():
                raise InvalidError(
                    f"debian_slim(python_version={python_version!r}): firebox images use this "
                    f"machine's Python, {_host_python()}; pass python_version="
                    f"{_host_python()!r} or leave it out."
                )
        return Image()

    @staticmethod
    def from_registry(tag: str, *, secret: Any = None,
                      setup_dockerfile_commands: Sequence[str] = (), force_build: bool = False,
                      add_python: str | None = None, **kwargs: Any) -> Image:
        """An image pulled from a registry (Docker Hub, GHCR, a private one with a Secret of
        REGISTRY_USERNAME and REGISTRY_PASSWORD), which becomes the container's whole root.
        Functions run in it with the server's Python, bound in: the image needs none."""
        return _registry(tag, secret, "basic", setup_dockerfile_commands, force_build,
                         add_python, kwargs, "from_registry")

    @staticmethod
    def from_gcp_artifact_registry(tag: str, secret: Any = None, *,
                                   setup_dockerfile_commands: Sequence[str] = (),
                                   force_build: bool = False, add_python: str | None = None,
                                   **kwargs: Any) -> Image:
        """from_registry for Google Artifact Registry: the Secret holds SERVICE_ACCOUNT_JSON."""
        return _registry(tag, secret, "gcp", setup_dockerfile_commands, force_build,
                         add_python, kwargs, "from_gcp_artifact_registry")

    @staticmethod
    def from_aws_ecr(tag: str, secret: Any = None, **kwargs: Any) -> Image:
        raise NotSupportedYet(
            "Image.from_aws_ecr is not supported yet: firebox does not call AWS for a login "
            "token. Use Image.from_registry(tag, secret=firebox.Secret.from_dict({"
            "'REGISTRY_USERNAME': 'AWS', 'REGISTRY_PASSWORD': <`aws ecr get-login-password`>}))."
        )

    @staticmethod
    def from_dockerfile(path: str | os.PathLike[str], *, context_dir: Any = None,
                        build_args: dict[str, str] | None = None, secrets: Sequence[Any] = (),
                        force_build: bool = False, add_python: str | None = None,
                        ignore: Sequence[str] = (), gpu: Any = None, **kwargs: Any) -> Image:
        """An image built from a Dockerfile without Docker: FROM pulls, RUN runs in a build
        container, COPY and ADD of local files make layers, ENV, WORKDIR, USER and
        ENTRYPOINT set the config; each step cached as any other."""
        if secrets:
            raise NotSupportedYet("from_dockerfile(secrets=) is not supported yet.")
        file = Path(path).expanduser()
        if not is_local():
            return Image()
        if not file.is_file():
            raise InvalidError(f"from_dockerfile: {path} is not a file.")
        context = Path(context_dir).expanduser() if context_dir is not None else file.parent
        _check_add_python(add_python, "from_dockerfile")
        return dockerfile.build(Image(), file.read_text(), context, dict(build_args or {}),
                                force_build, ignore, str(file))

    @staticmethod
    def micromamba(*args: Any, **kwargs: Any) -> Image:
        raise NotSupportedYet("Image.micromamba is not supported yet; use Image.debian_slim().")

    # ---- build steps -----------------------------------------------------------------------

    def _with_step(self, step: dict[str, Any], blobs: dict[str, bytes] | None = None) -> Image:
        if self._mounts:
            added = self._mounts[-1]["label"]
            raise InvalidError(
                f"A build step ({step['label']}) cannot follow {added}, which adds files at "
                "container start; pass copy=True to it so its files are baked into a layer, "
                "or move the build step before it."
            )
        return Image(self._steps + (step,), self._mounts, {**self._blobs, **(blobs or {})},
                     self._registry_secret)

    def pip_install(self, *packages: Any, requirements: Sequence[str] | None = None,
                    find_links: str | None = None, index_url: str | None = None,
                    extra_index_url: str | None = None, pre: bool = False,
                    extra_options: str = "",
                    env: dict[str, str] | None = None, secrets: Sequence[Any] = (),
                    gpu: Any = None) -> Image:
        """Install Python packages (with uv) into a layer of their own."""
        if secrets:
            raise NotSupportedYet("pip_install(secrets=) is not supported yet.")
        pkgs = _strings(packages, "pip_install")
        if not is_local():
            return self  # in a container the image is already built: read no local files
        texts = []
        for req in requirements or ():
            path = Path(req).expanduser()
            if not path.is_file():
                raise InvalidError(f"The requirements file {req} does not exist.")
            texts.append(path.read_text())
        if not pkgs and not texts:
            return self
        step: dict[str, Any] = {"kind": "pip", "packages": sorted(pkgs),
                                "label": "pip_install " + " ".join(pkgs or ["-r requirements"])}
        if texts:
            step["requirements"] = texts
        options = {"index_url": index_url, "extra_index_url": extra_index_url,
                   "find_links": find_links, "pre": pre or None,
                   "extra_options": extra_options or None, "env": env or None}
        step.update({k: v for k, v in options.items() if v is not None})
        return self._with_step(step)

    def uv_pip_install(self, *packages: Any, requirements: Sequence[str] | None = None,
                       find_links: str | None = None, index_url: str | None = None,
                       extra_index_url: str | None = None, pre: bool = False,
                       extra_options: str = "", **kwargs: Any) -> Image:
        return self.pip_install(*packages, requirements=requirements, find_links=find_links,
                                index_url=index_url, extra_index_url=extra_index_url, pre=pre,
                                extra_options=extra_options, **kwargs)

    def pip_install_from_requirements(self, requirements_txt: str, **kwargs: Any) -> Image:
        return self.pip_install(requirements=[requirements_txt], **kwargs)

    def pip_install_from_pyproject(self, pyproject_toml: str,
                                   optional_dependencies: Sequence[str] = (),
                                   **kwargs: Any) -> Image:
        if not is_local():
            return self
        path = Path(pyproject_toml).expanduser()
        try:
            project = tomllib.loads(path.read_text()).get("project", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidError(f"Cannot read {pyproject_toml}: {exc}.") from None
        pkgs = list(project.get("dependencies", []))
        extras = project.get("optional-dependencies", {})
        for group in optional_dependencies:
            if group not in extras:
                raise InvalidError(f"{pyproject_toml} has no optional dependencies '{group}'.")
            pkgs += extras[group]
        return self.pip_install(*pkgs, **kwargs)

    def apt_install(self, *packages: Any,
                    secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        """Install Debian packages with apt-get, in a build container: the host is untouched."""
        if secrets:
            raise NotSupportedYet("apt_install(secrets=) is not supported yet.")
        pkgs = _strings(packages, "apt_install")
        if not pkgs:
            return self
        return self._with_step({"kind": "apt", "packages": pkgs,
                                "label": "apt_install " + " ".join(pkgs)})

    def run_commands(self, *commands: Any, env: dict[str, str] | None = None,
                     secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        """Run shell commands in a build container; what they write becomes a layer."""
        if secrets:
            raise NotSupportedYet("run_commands(secrets=) is not supported yet.")
        cmds = _strings(commands, "run_commands")
        if not cmds:
            return self
        step: dict[str, Any] = {"kind": "run", "commands": cmds,
                                "label": "run_commands " + "; ".join(cmds)}
        if env:
            step["env"] = {str(k): str(v) for k, v in env.items()}
        return self._with_step(step)

    def env(self, vars: dict[str, str]) -> Image:
        clean = {str(k): str(v) for k, v in vars.items()}
        return self._with_step({"kind": "env", "env": clean,
                                "label": "env " + " ".join(f"{k}=..." for k in clean)})

    def workdir(self, path: str | os.PathLike[str]) -> Image:
        remote = _absolute(str(path), "workdir")
        return self._with_step({"kind": "workdir", "path": remote, "label": f"workdir {remote}"})

    def entrypoint(self, entrypoint_commands: Sequence[str]) -> Image:
        """The program a registry image's containers start through (the runtime's command is
        its arguments, so it must end by running them, as `exec "$@"`); [] runs none."""
        args = _strings(entrypoint_commands, "entrypoint") if entrypoint_commands else []
        if not self._steps or self._steps[0].get("kind") != "registry":
            raise InvalidError("Image.entrypoint applies to images from a registry or a "
                               "Dockerfile (from_registry, from_dockerfile): containers of the "
                               "others start the firebox runtime directly.")
        return self._with_step({"kind": "entrypoint", "args": args,
                                "label": "entrypoint " + " ".join(args)})

    def user(self, user: str) -> Image:
        """The user a registry image's containers run as: a name from its /etc/passwd or
        uid[:gid] (Dockerfile USER)."""
        return self._with_step({"kind": "user", "user": str(user), "label": f"user {user}"})

    def dockerfile_commands(self, *dockerfile_commands: Any, context_dir: Any = None,
                            build_args: dict[str, str] | None = None, secrets: Sequence[Any] = (),
                            force_build: bool = False, ignore: Sequence[str] = (),
                            gpu: Any = None, **kwargs: Any) -> Image:
        """Dockerfile instructions added to this image (FROM only as the first of a new one)."""
        if secrets:
            raise NotSupportedYet("dockerfile_commands(secrets=) is not supported yet.")
        lines = _strings(dockerfile_commands, "dockerfile_commands")
        if not lines or not is_local():
            return self
        context = Path(context_dir).expanduser() if context_dir is not None else Path.cwd()
        return dockerfile.extend(self, "\n".join(lines), context, dict(build_args or {}),
                                 force_build, ignore, "dockerfile_commands")

    def run_function(self, *args: Any, **kwargs: Any) -> Image:
        raise NotSupportedYet("Image.run_function is not supported yet; use run_commands.")

    # ---- local files -----------------------------------------------------------------------

    def _add_files(self, files: dict[str, Path], python: dict[str, Path], copy: bool,
                   label: str) -> Image:
        blobs: dict[str, bytes] = {}
        entry: dict[str, Any] = {"label": label}
        for key, found in (("files", files), ("python", python)):
            if not found:
                continue
            digests = {}
            for dest, local in sorted(found.items()):
                data = local.read_bytes()
                digest = sha256(data)
                blobs[digest] = data
                digests[dest] = [digest, 0o755 if os.access(local, os.X_OK) else 0o644]
            entry[key] = digests
        if copy:
            return self._with_step({"kind": "copy", **entry}, blobs)
        return Image(self._steps, self._mounts + (entry,), {**self._blobs, **blobs},
                     self._registry_secret)

    def add_local_file(self, local_path: str | os.PathLike[str], remote_path: str, *,
                       copy: bool = False) -> Image:
        if not is_local():
            return self
        local = Path(local_path).expanduser()
        if not local.is_file():
            raise InvalidError(f"add_local_file: {local_path} is not a file.")
        remote = str(remote_path)
        if remote.endswith("/"):
            remote += local.name
        remote = _absolute(remote, "add_local_file")
        return self._add_files({remote: local}, {}, copy, f"add_local_file {local} {remote}")

    def add_local_dir(self, local_path: str | os.PathLike[str], remote_path: str, *,
                      copy: bool = False, ignore: Sequence[str] = ()) -> Image:
        if not is_local():
            return self
        local = Path(local_path).expanduser()
        if not local.is_dir():
            raise InvalidError(f"add_local_dir: {local_path} is not a directory.")
        remote = _absolute(str(remote_path), "add_local_dir")
        files = {}
        for path in sorted(local.rglob("*")):
            rel = path.relative_to(local)
            if not path.is_file() or _ignored(rel, ignore):
                continue
            files[str(PurePosixPath(remote) / rel.as_posix())] = path
            if len(files) > MAX_LOCAL_FILES:
                raise InvalidError(f"add_local_dir: {local_path} has more than "
                                   f"{MAX_LOCAL_FILES} files; narrow it with ignore=[...].")
        return self._add_files(files, {}, copy, f"add_local_dir {local} {remote}")

    def add_local_python_source(self, *modules: str, copy: bool = False,
                                ignore: Sequence[str] = ()) -> Image:
        """Make local modules importable in the container (placed on its Python path)."""
        if not is_local():
            return self
        python: dict[str, Path] = {}
        for name in modules:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin in (None, "built-in", "frozen"):
                raise InvalidError(f"add_local_python_source: no local module named {name!r}.")
            if spec.submodule_search_locations:
                pkg = Path(next(iter(spec.submodule_search_locations)))
                for path in sorted(pkg.rglob("*.py")):
                    rel = path.relative_to(pkg)
                    if "__pycache__" not in rel.parts and not _ignored(rel, ignore):
                        python[str(PurePosixPath(name.replace(".", "/")) / rel.as_posix())] = path
            else:
                python[name.replace(".", "/") + Path(spec.origin).suffix] = Path(spec.origin)
        return self._add_files({}, python, copy,
                               "add_local_python_source " + " ".join(modules))

    # ---- in the container ------------------------------------------------------------------

    @contextlib.contextmanager
    def imports(self) -> Iterator[None]:
        """`with image.imports(): import torch`: the imports only need to work in the
        container; here an ImportError is ignored."""
        try:
            yield
        except ImportError:
            if not is_local():
                raise

    @_sync.live_method
    async def build(self, app: Any = None) -> Image:
        """Build the image now, on the server this client uses (inside `with app.run():`, the
        app's), rather than when a function that uses it first runs or deploys: its steps are
        cached there, so that later build finds them all done. Returns the image."""
        await build_image(self)
        return self

    # ---- what the control plane builds -----------------------------------------------------

    def _build_request(self) -> dict[str, Any]:
        return {"python": _host_python(), "steps": list(self._steps),
                "mounts": list(self._mounts)}


def _check_add_python(add_python: str | None, what: str) -> None:
    if add_python is None:
        return
    wanted = ".".join(str(add_python).split(".")[:2])
    if wanted != _host_python():
        raise InvalidError(
            f"{what}(add_python={add_python!r}): firebox runs functions in a registry image "
            f"with the server's Python, {_host_python()}, bound in; pass add_python="
            f"{_host_python()!r} or leave it out.")


def _registry(tag: str, secret: Any, login: str, setup: Sequence[str], force_build: bool,
              add_python: str | None, kwargs: dict[str, Any], what: str) -> Image:
    if kwargs:
        raise InvalidError(f"Image.{what}() got unexpected arguments: {', '.join(kwargs)}.")
    if not isinstance(tag, str) or not tag.strip() or any(c.isspace() for c in tag):
        raise InvalidError(f"Image.{what} takes an image name like 'python:3.11-slim' or "
                           f"'ghcr.io/org/name:tag', not {tag!r}.")
    if secret is not None and not isinstance(secret, Secret):
        raise InvalidError(f"Image.{what}(secret=) takes a firebox.Secret, "
                           f"not {type(secret).__name__}.")
    _check_add_python(add_python, f"Image.{what}")
    step: dict[str, Any] = {"kind": "registry", "tag": tag.strip(), "label": f"{what} {tag}"}
    if secret is not None:
        step["registry_login"] = login
    if force_build:
        step["force"] = os.urandom(8).hex()
    image = Image((step,), registry_secret=secret)
    return image.dockerfile_commands(*setup) if setup else image


def _ignored(rel: Path, patterns: Sequence[str]) -> bool:
    return any(rel.match(p) or any(part == p for part in rel.parts) for p in patterns)


__all__ = ["Image"]
