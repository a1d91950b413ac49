"""Loading a user's app file and turning a runnable's parameters into command-line options."""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import inspect
import os
import re
import sys
import traceback
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from ..exception import Error, InvalidError
from ..sdk.app import App
from ..sdk.cls import Cls
from ..sdk.function import Function
from ..sdk.partial import class_parameters, parameter_defaults

_MODULE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def import_ref(ref: str, module_mode: bool = False) -> ModuleType:
    """The user's app module: a file (app.py), or a module path (pkg.app) imported from the
    current directory, with -m as in Modal, or a dotted name that is no file."""
    if module_mode or (not ref.endswith(".py") and not Path(ref).exists()
                       and _MODULE_PATH.match(ref)):
        return import_module_path(ref)
    return import_file(ref)


def import_module_path(name: str) -> ModuleType:
    """Import module `name` (a package's module: relative imports work) afresh from the current
    directory, as `python -m` would find it."""
    if not _MODULE_PATH.match(name):
        raise click.UsageError(f"'{name}' is not a module path; write it as package.module, or "
                               "give the file's path without -m.")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for loaded in [k for k in sys.modules if k == name or k.startswith(f"{name}.")]:
        del sys.modules[loaded]  # `firebox serve` imports it again after a change
    importlib.invalidate_caches()
    with _loading(name, None):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(f"{exc.name}.")):
                raise click.UsageError(
                    f"No module named '{name}' from {cwd}: run this in the directory that holds "
                    "its package, or give the file's path (app.py).") from None
            raise  # a module the user's code imports: their traceback, as for any error


def import_file(path_text: str) -> ModuleType:
    path = Path(path_text).resolve()
    if not path.exists():
        raise click.UsageError(f"No such file: {path_text}")
    if path.suffix != ".py":
        raise click.UsageError(f"{path_text} is not a Python file.")
    sys.path.insert(0, str(path.parent))
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with _loading(path_text, path):
        spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _loading(shown: str, path: Path | None) -> Iterator[None]:
    """Running the user's module (the file at path, or a module path): a firebox refusal is one
    line with where in the user's code; any other error, the user's traceback, then one line."""
    try:
        yield
    except click.ClickException:
        raise
    except Error as exc:  # firebox refused something the code asks for: the message says what
        raise type(exc)(f"{_where_user_code_was(exc)}{exc}") from None
    except Exception as exc:
        click.echo(_user_traceback(exc, path), err=True, nl=False)
        raise click.ClickException(
            f"{shown} failed to load ({type(exc).__name__}, above); fix it and run again."
        ) from None


FIREBOX_DIR = str(Path(__file__).resolve().parents[1])


def _user_traceback(exc: BaseException, path: Path | None) -> str:
    """exc's traceback from the user's file on (or, for a module, from the first frame outside
    firebox and the import machinery), as Python prints it for a script: without the frames of
    this command, click and the import machinery above and between."""
    tb = exc.__traceback__
    while tb is not None and not _users(tb.tb_frame.f_code.co_filename, path):
        tb = tb.tb_next
    shown = traceback.TracebackException(type(exc), exc, tb)
    shown.stack = traceback.StackSummary.from_list(
        [f for f in shown.stack if not f.filename.startswith("<frozen importlib")])
    return "".join(shown.format())


def _users(filename: str, path: Path | None) -> bool:
    if path is not None:
        return filename == str(path)
    return (not filename.startswith((FIREBOX_DIR, "<frozen")) and "site-packages" not in filename
            and "/click/" not in filename)


def _where_user_code_was(exc: BaseException) -> str:
    """The file and line of the user's code that the deepest frame outside firebox ran."""
    where = ""
    for frame, line in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if not filename.startswith((FIREBOX_DIR, "<frozen")) and "site-packages" not in filename:
            where = f"{_shown_path(filename)}, line {line}: "
    return where


def _shown_path(filename: str) -> str:
    try:
        return str(Path(filename).relative_to(Path.cwd()))
    except ValueError:
        return filename


def _apps(module: ModuleType) -> dict[str, App]:
    return {k: v for k, v in vars(module).items() if isinstance(v, App)}


def find_app(module: ModuleType, app_name: str | None = None, typed: str | None = None) -> App:
    """The App called app_name in module, or its only one; typed is the file as the user wrote
    it, for the FILE::NAME a message suggests."""
    apps = _apps(module)
    if app_name:
        if app_name not in apps:
            raise click.UsageError(f"{module.__file__} has no App named '{app_name}'.")
        return apps[app_name]
    if not apps:
        raise click.UsageError(f"{module.__file__} defines no firebox.App.")
    if len(apps) > 1:
        found = ", ".join(sorted(apps))
        first = sorted(apps)[0]
        raise click.UsageError(f"{typed or module.__file__} defines several apps ({found}); say "
                               f"which with {typed or module.__file__}::{first}.")
    return next(iter(apps.values()))


def find_app_and_runnable(module: ModuleType, name: str | None,
                          typed: str) -> tuple[App, str | None]:
    """`firebox run FILE::NAME`: NAME is a runnable of the file's App, an App variable, or
    APP.RUNNABLE (as in Modal)."""
    apps = _apps(module)
    head, _, rest = (name or "").partition(".")
    if head in apps:
        return apps[head], rest or None
    return find_app(module, typed=typed), name


Runnable = tuple[str, Callable[..., Any], Callable[..., Any]]  # label, signature source, runner


def find_runnable(app: App, ref: str | None) -> Runnable:
    """The local entrypoint, function or Cls.method to run: `ref`, or the only candidate."""
    entrypoints = app.registered_entrypoints
    classes = app.registered_classes
    functions = {k: v for k, v in app.registered_functions.items() if k not in classes}
    if ref:
        if ref in entrypoints:
            return _entrypoint(ref, entrypoints[ref])
        if ref in functions:
            return _function(ref, functions[ref])
        cls_name, _, method = ref.partition(".")
        if method and cls_name in app.registered_classes:
            return _method(app.registered_classes[cls_name], method)
        raise click.UsageError(
            f"No local entrypoint, function or Cls.method named '{ref}' in the app."
        )
    if len(entrypoints) == 1:
        name, f = next(iter(entrypoints.items()))
        return _entrypoint(name, f)
    if not entrypoints and len(functions) == 1:
        name, fn = next(iter(functions.items()))
        return _function(name, fn)
    names = sorted(entrypoints) or sorted(functions)
    raise click.UsageError(
        "Say which to run with FILE::NAME; candidates: " + ", ".join(names or ["none"])
    )


def _entrypoint(name: str, f: Callable[..., Any]) -> Runnable:
    def run(**kwargs: Any) -> Any:
        result = f(**kwargs)
        if inspect.iscoroutine(result):
            import asyncio

            result = asyncio.run(result)
        return result

    return name, f, run


def _function(name: str, fn: Function) -> Runnable:
    if fn._raw_f is None:
        raise InvalidError(f"'{name}' has no local definition to read its parameters from.")

    def run(**kwargs: Any) -> Any:
        if fn._is_generator:
            for value in fn.remote_gen(**kwargs):
                print(value)
            return None
        result = fn.remote(**kwargs)
        if result is not None:
            print(result)
        return None

    return name, fn._raw_f, run


_PARAMETER_TYPES = {"int": int, "str": str, "bool": bool, "bytes": str}


def _method(cls: Cls, method: str) -> Runnable:
    """Cls.method: its options are the method's parameters and the class's (as in Modal)."""
    user_cls = cls._user_cls
    raw = getattr(user_cls, method, None) if user_cls else None
    if user_cls is None or raw is None:
        raise click.UsageError(f"{cls._name} has no method '{method}'.")
    f = raw.raw_f if hasattr(raw, "raw_f") else raw
    hints = _hints(f)
    own = [p.replace(kind=p.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
           for p in list(inspect.signature(f).parameters.values())[1:]  # drop self
           if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    defaults = parameter_defaults(user_cls)
    of_class = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                          default=defaults.get(name, inspect.Parameter.empty),
                          annotation=_PARAMETER_TYPES[info["type"]])
        for name, info in class_parameters(user_cls).items() if info["init"]
    ]
    clash = {p.name for p in own} & {p.name for p in of_class}
    if clash:
        raise click.UsageError(f"{cls._name}.{method} and {cls._name} both have a parameter "
                               f"named {', '.join(sorted(clash))}; rename one to run it here.")

    def run(**kwargs: Any) -> Any:
        params = {p.name: kwargs.pop(p.name) for p in of_class}
        result = getattr(cls(**params), method).remote(**kwargs)
        if result is not None:
            print(result)

    def signature_source(*args: Any, **kwargs: Any) -> None: ...

    signature_source.__signature__ = inspect.Signature(own + of_class)  # type: ignore[attr-defined]
    return f"{cls._name}.{method}", signature_source, run


def _hints(f: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(f)
    except Exception:
        return {}


def build_command(label: str, f: Callable[..., Any], run: Callable[..., Any]) -> click.Command:
    """A click command whose options are f's parameters."""
    hints = _hints(f)
    params: list[click.Parameter] = []
    for p in inspect.signature(f).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        required = p.default is inspect.Parameter.empty
        default = None if required else p.default
        annotation = hints.get(p.name, p.annotation)
        if annotation is inspect.Parameter.empty and default is not None:
            annotation = type(default)  # Modal's rule: an unannotated default gives the type
        dashed = "--" + p.name.replace("_", "-")
        names = [dashed] if "_" not in p.name else [dashed, "--" + p.name]
        if annotation is bool:
            params.append(
                click.Option(
                    [f"{dashed}/--no-{p.name.replace('_', '-')}"],
                    default=bool(default),
                    show_default=True,
                    required=False,
                    expose_value=True,
                )
            )
            params[-1].name = p.name
            continue
        # An explicit default=None would satisfy a required option (click >= 8.3): omit it.
        extra: dict[str, Any] = {} if required else {"default": default, "show_default": True}
        option = click.Option(names, type=_click_type(annotation), required=required, **extra)
        option.name = p.name
        params.append(option)
    return click.Command(label, params=params, callback=run,
                         help=inspect.getdoc(f) or f"Run {label}.")


def _click_type(annotation: Any) -> Any:
    if annotation in (int, float, str):
        return annotation
    if annotation is inspect.Parameter.empty:
        return str
    if annotation is datetime.datetime:
        return click.DateTime()
    if typing.get_origin(annotation) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)])
    return str
