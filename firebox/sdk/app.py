"""App: a named group of functions and classes that run, deploy and stop together."""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable
from typing import Any

from .. import _sync, wire
from .. import client as client_mod
from ..exception import InvalidError, NotFoundError
from ..wire import spec as wire_spec
from .attach import attach_spec
from .cls import Cls
from .function import Function
from .gpu import gpu_spec, isolation_spec
from .image import Image
from .options import reject_old_options, resource_spec
from .package import CodeBundle, collect, module_name
from .partial import PartialFunction, class_parameters
from .retries import Retries
from .runner import RunContext, deploy
from .schedule import schedule_spec


class App:
    """A group of functions and classes. Run it with `firebox run`, or `with app.run():`."""

    def __init__(
        self,
        name: str | None = None,
        *,
        tags: dict[str, str] | None = None,
        image: Any = None,
        secrets: Any = (),
        volumes: Any = None,
        include_source: bool = True,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise InvalidError(f"App() got unexpected arguments: {', '.join(sorted(kwargs))}.")
        self._image = _check_image(image, "App(image=)")
        self._attached = attach_spec(list(secrets), volumes or {}, None)
        self.name = name
        self.tags = dict(tags or {})
        self.include_source = include_source
        self._functions: dict[str, Function] = {}
        self._classes: dict[str, Cls] = {}
        self._entrypoints: dict[str, Callable[..., Any]] = {}
        self._modules: list[Any] = []
        self.app_id: str | None = None

    def __repr__(self) -> str:
        return f"<firebox.App {self.name or '(unnamed)'}>"

    @property
    def registered_functions(self) -> dict[str, Function]:
        return dict(self._functions)

    @property
    def registered_classes(self) -> dict[str, Cls]:
        return dict(self._classes)

    @property
    def registered_entrypoints(self) -> dict[str, Callable[..., Any]]:
        return dict(self._entrypoints)

    # ---- decorators ------------------------------------------------------------------------

    def function(self, _warn_parentheses_missing: Any = None, *, name: str | None = None,
                 is_generator: bool | None = None, serialized: bool = False,
                 schedule: Any = None, **options: Any) -> Callable[[Any], Function]:
        if _warn_parentheses_missing is not None:
            raise InvalidError("Use @app.function() with parentheses.")
        reject_old_options(options)
        base = self._common_spec(options)
        schedule_config = schedule_spec(schedule)

        def wrap(f: Any) -> Function:
            partial = f if isinstance(f, PartialFunction) else None
            raw = partial.raw_f if partial else f
            if inspect.isclass(raw):
                raise InvalidError("Use @app.cls() for classes.")
            if not callable(raw):
                raise InvalidError("@app.function() decorates functions.")
            if partial is not None and partial.flags & {"method", "enter", "exit"}:
                raise InvalidError("@method/@enter/@exit belong inside an @app.cls() class.")
            fname = name or raw.__name__
            generator = (
                is_generator if is_generator is not None
                else inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw)
            )
            if "<locals>" in raw.__qualname__ and not serialized:
                raise InvalidError(
                    f"'{raw.__qualname__}' is defined inside another function; define it at "
                    "module level or pass serialized=True."
                )
            spec = dict(base)
            spec.update(
                kind="function",
                qualname=raw.__qualname__,
                module=None if serialized else module_name(sys.modules[raw.__module__]),
                is_generator=generator,
                is_async=inspect.iscoroutinefunction(raw) or inspect.isasyncgenfunction(raw),
            )
            if generator and spec.get("retries"):
                raise InvalidError("Generator functions cannot have retries.")
            if partial is not None:
                spec.update(_concurrency_spec(partial))
            if schedule_config is not None:
                spec["schedule"] = schedule_config
            if partial is not None and partial.web is not None:
                _check_web(fname, spec, partial.web)
            fn = Function(name=fname, spec=spec, raw_f=raw, app=self)
            if serialized:
                fn._serialized = raw  # type: ignore[attr-defined]
            self._add_function(fname, fn, raw)
            return fn

        return wrap

    def cls(self, _warn_parentheses_missing: Any = None, **options: Any) -> Callable[[type], Cls]:
        if _warn_parentheses_missing is not None:
            raise InvalidError("Use @app.cls() with parentheses.")
        reject_old_options(options)
        serialized = bool(options.pop("serialized", False))
        base = self._common_spec(options)

        def wrap(user_cls: type) -> Cls:
            if not inspect.isclass(user_cls):
                raise InvalidError("@app.cls() decorates classes.")
            if "__init__" in vars(user_cls):
                raise InvalidError(
                    f"{user_cls.__name__} defines __init__; declare its inputs as "
                    "`name: int = firebox.parameter()` and set up state in an @enter() method."
                )
            methods: dict[str, dict[str, Any]] = {}
            batching: dict[str, Any] = {}
            for attr, value in vars(user_cls).items():
                if isinstance(value, PartialFunction) and value.flags & {"method", "batched"}:
                    raw = value.raw_f
                    gen = value.is_generator
                    if gen is None:
                        gen = inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw)
                    methods[attr] = {"is_generator": gen, "batched": "batched" in value.flags}
                    if "batched" in value.flags:
                        batching = _concurrency_spec(value)
                if isinstance(value, PartialFunction) and value.web is not None:
                    methods[attr] = _web_method(user_cls.__name__, attr, value, base)
            if not methods:
                raise InvalidError(
                    f"{user_cls.__name__} has no method marked with @firebox.method() or a web "
                    "decorator like @firebox.fastapi_endpoint()."
                )
            spec = dict(base)
            spec.update(
                kind="class",
                qualname=user_cls.__qualname__,
                module=None if serialized else module_name(sys.modules[user_cls.__module__]),
                methods=methods,
                parameters=class_parameters(user_cls),
            )
            _check_web_parameters(user_cls.__name__, methods, spec["parameters"])
            spec.update(batching)
            concurrent = getattr(user_cls, "__firebox_concurrent__", None)
            if concurrent:
                spec["max_inputs"], spec["target_inputs"] = concurrent
            cname = user_cls.__name__
            fn = Function(name=cname, spec=spec, app=self)
            if serialized:
                fn._serialized = user_cls  # type: ignore[attr-defined]
            cls_obj = Cls(name=cname, function=fn, user_cls=user_cls)
            self._classes[cname] = cls_obj
            self._add_function(cname, fn, user_cls)
            return cls_obj

        return wrap

    def local_entrypoint(self, _warn_parentheses_missing: Any = None, *,
                         name: str | None = None) -> Callable[[Any], Any]:
        if _warn_parentheses_missing is not None:
            raise InvalidError("Use @app.local_entrypoint() with parentheses.")

        def wrap(f: Any) -> Any:
            self._entrypoints[name or f.__name__] = f
            return f

        return wrap

    def _common_spec(self, options: dict[str, Any]) -> dict[str, Any]:
        known = {"cpu", "memory", "timeout", "scaledown_window", "min_containers",
                 "max_containers", "buffer_containers", "retries", "startup_timeout",
                 "single_use_containers", "enable_memory_snapshot", "block_network", "region",
                 "cloud", "ephemeral_disk", "max_inputs", "image", "secrets", "volumes", "gpu",
                 "env", "network_file_systems", "cloud_bucket_mounts", "proxy", "i6pn",
                 "restrict_modal_access", "experimental_options", "nonpreemptible",
                 "isolation"}
        unknown = sorted(set(options) - known)
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f"; did you mean {close[0]}=?" if close else "."
            raise InvalidError(f"Unexpected options: {', '.join(unknown)}{hint}")
        if "timeout" in options and options["timeout"] is None:
            raise InvalidError("timeout=None is not allowed; give the limit in seconds.")
        spec = resource_spec(
            options.get("cpu"), options.get("memory"),
            options.get("timeout", wire_spec.DEFAULTS["timeout"]),
            options.get("scaledown_window"), options.get("min_containers"),
            options.get("max_containers"), options.get("buffer_containers"),
            options.get("retries"),
        )
        if options.get("startup_timeout") is not None:
            spec["startup_timeout"] = float(options["startup_timeout"])
        if options.get("single_use_containers"):
            spec["single_use_containers"] = True
        if options.get("max_inputs"):
            spec["max_inputs"] = int(options["max_inputs"])
        spec["region"], spec["cloud"] = options.get("region"), options.get("cloud")
        if options.get("block_network"):
            spec["block_network"] = True
        own = attach_spec(options.get("secrets"), options.get("volumes"), options.get("env"))
        spec["secrets"] = self._attached["secrets"] + own.get("secrets", [])
        spec["volumes"] = {**self._attached["volumes"], **own.get("volumes", {})}
        spec["gpu"] = gpu_spec(options.get("gpu"))
        spec["isolation"] = isolation_spec(options.get("isolation"))
        image = _check_image(options.get("image"), "image=") or self._image
        if image is not None:
            spec["image"] = image  # built by publish, before registering
        return spec

    def _add_function(self, name: str, fn: Function, obj: Any) -> None:
        if name in self._functions:
            raise InvalidError(f"App already has a function or class named '{name}'.")
        self._functions[name] = fn
        module = sys.modules.get(getattr(obj, "__module__", ""))
        if module is not None and module not in self._modules:
            self._modules.append(module)

    def include(self, other: App) -> App:
        for name, fn in other._functions.items():
            self._add_function(name, fn, fn._raw_f or object())
            fn._app = self
        self._classes.update(other._classes)
        self._modules.extend(m for m in other._modules if m not in self._modules)
        return self

    # ---- running ---------------------------------------------------------------------------

    def run(self, *, detach: bool = False, show_logs: bool = True,
            interactive: bool = False) -> Any:
        """A context in which the app's functions run: `with app.run(): f.remote()`."""
        return RunContext(self, detach=detach, show_logs=show_logs)

    def deploy(self, *, name: str | None = None, tag: str = "") -> App:
        _sync.run(deploy(self, name or self.name, tag))
        return self

    @_sync.live_method
    async def stop(self) -> None:
        if self.app_id is None:
            raise InvalidError("The app is not running.")
        await client_mod.current().request("POST", f"/v1/apps/{self.app_id}/stop")

    @classmethod
    def lookup(cls, name: str, *, create_if_missing: bool = False) -> App:
        app = cls(name)

        async def find() -> None:
            c = client_mod.current()
            apps = (await c.request("GET", "/v1/apps"))["apps"]
            for a in apps:
                if a["name"] == name and a["state"] == "deployed":
                    app.app_id = a["app_id"]
                    return
            if not create_if_missing:
                raise NotFoundError(f"No deployed app named '{name}'.")
            resp = await c.request("POST", "/v1/apps", body={"name": name, "mode": "deploy"})
            app.app_id = resp["app_id"]

        _sync.run(find())
        return app

    # ---- what gets registered --------------------------------------------------------------

    def _bundle(self) -> CodeBundle | None:
        modules = [m for m in self._modules if getattr(m, "__file__", None)]
        return collect(modules[0]) if modules and self.include_source else None

    def _function_specs(self, bundle: CodeBundle | None, serialized: dict[str, str]
                        ) -> list[dict[str, Any]]:
        specs = []
        for name, fn in self._functions.items():
            spec = dict(fn._spec)
            spec["name"] = name
            spec["code"] = {"module": bundle.module, "files": bundle.manifest} if bundle else None
            spec["serialized"] = serialized.get(name)
            if spec["module"] is None and spec["serialized"] is None:
                raise InvalidError(f"'{name}' needs serialized=True or a module file.")
            specs.append({"name": name, "spec": spec})
        return specs

    def _serialized_blobs(self) -> dict[str, bytes]:
        out = {}
        for name, fn in self._functions.items():
            obj = getattr(fn, "_serialized", None)
            if obj is not None:
                out[name] = wire.serialize(obj, f"definition of {name}")
        return out


def _check_image(image: Any, where: str) -> Image | None:
    if image is not None and not isinstance(image, Image):
        raise InvalidError(f"{where} takes a firebox.Image, not {type(image).__name__}.")
    return image


def _check_web(name: str, spec: dict[str, Any], web: dict[str, Any]) -> None:
    """Put a web decorator's settings into the spec, refusing what a web function can't do."""
    if spec.get("retries"):
        raise InvalidError(f"Web function '{name}' cannot have retries.")
    if spec.get("is_generator"):
        raise InvalidError(f"Web function '{name}' cannot be a generator; stream with a "
                           "StreamingResponse instead.")
    if spec.get("batch_max_size"):
        raise InvalidError(f"Web function '{name}' cannot be @batched.")
    spec["web"] = dict(web)


def _web_method(cls_name: str, attr: str, p: PartialFunction, base: dict[str, Any]
                ) -> dict[str, Any]:
    """A web method's entry in its class's spec: served at its own URL by the class's
    containers, refusing what a web method can't do."""
    where = f"{cls_name}.{attr}"
    if p.flags & {"method", "batched", "concurrent"}:
        raise InvalidError(
            f"Web method '{where}' cannot also be @method, @batched or @concurrent; put "
            "@firebox.concurrent on the class to serve requests concurrently."
        )
    if p.flags & {"enter", "exit"}:
        raise InvalidError(f"Web method '{where}' cannot also be an @enter or @exit hook.")
    if inspect.isgeneratorfunction(p.raw_f) or inspect.isasyncgenfunction(p.raw_f):
        raise InvalidError(f"Web method '{where}' cannot be a generator; stream with a "
                           "StreamingResponse instead.")
    if base.get("retries"):
        raise InvalidError(f"{cls_name} has web method '{attr}', and web requests cannot be "
                           "retried; remove retries= from @app.cls().")
    return {"is_generator": False, "batched": False, "web": dict(p.web or {})}


def _check_web_parameters(cls_name: str, methods: dict[str, Any],
                          parameters: dict[str, Any]) -> None:
    """Web methods are served by the class's default instance, so every parameter needs a
    default."""
    if not any(m.get("web") for m in methods.values()):
        return
    for pname, p in parameters.items():
        if not p.get("has_default"):
            raise InvalidError(
                f"{cls_name} has web methods, which its default instance serves, so parameter "
                f"'{pname}' needs a default: firebox.parameter(default=...)."
            )


def _concurrency_spec(p: PartialFunction) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if "concurrent" in p.flags:
        spec["max_inputs"], spec["target_inputs"] = p.max_inputs, p.target_inputs
    if "batched" in p.flags:
        spec["batch_max_size"], spec["batch_wait_ms"] = p.batch_max_size, p.batch_wait_ms
    return spec


__all__ = ["App", "Retries"]
