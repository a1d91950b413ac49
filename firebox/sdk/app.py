"""App: a named group of functions and classes that run, deploy and stop together."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import _sync, wire
from .. import client as client_mod
from ..exception import InvalidError, NotFoundError
from ..wire import spec as wire_spec
from .attach import attach_spec
from .cls import Cls, class_attributes
from .function import Function
from .image import Image
from .options import check_image, function_spec
from .package import CodeBundle, collect, module_name
from .partial import PartialFunction, class_parameters
from .retries import Retries
from .runner import RunContext, deploy
from .schedule import Schedule, schedule_spec
from .secret import Secret
from .volume import Volume
from .web import check_web, check_web_parameters, web_method


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
        self._image = check_image(image, "App(image=)")
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

    def function(
        self,
        _warn_parentheses_missing: Any = None,
        *,
        image: Image | None = None,
        gpu: str | Sequence[str] | None = None,
        cpu: float | tuple[float, float] | None = None,
        memory: int | tuple[int, int] | None = None,
        timeout: float = wire_spec.DEFAULTS["timeout"],
        startup_timeout: float | None = None,
        retries: int | Retries | None = None,
        secrets: Sequence[Secret] | None = None,
        env: dict[str, str | None] | None = None,
        volumes: dict[str, Volume] | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: float | None = None,
        max_inputs: int | None = None,
        single_use_containers: bool = False,
        block_network: bool = False,
        isolation: wire_spec.Isolation | None = None,
        schedule: Schedule | None = None,
        name: str | None = None,
        is_generator: bool | None = None,
        serialized: bool = False,
        region: str | Sequence[str] | None = None,
        cloud: str | None = None,
        ephemeral_disk: int | None = None,
        enable_memory_snapshot: bool = False,
        nonpreemptible: bool = False,
        i6pn: bool | None = None,
        restrict_modal_access: bool = False,
        experimental_options: dict[str, Any] | None = None,
        network_file_systems: dict[str, Any] | None = None,
        cloud_bucket_mounts: dict[str, Any] | None = None,
        proxy: Any = None,
        **kwargs: Any,
    ) -> Callable[[Any], Function]:
        """Run the decorated function in containers: `@app.function(gpu="H100")`; call it
        with `.remote()`, `.map()`, `.spawn()`, or `.local()` to run it here.

        Args:
            image: the Image its containers run; the App's image when not given.
            gpu: a GPU type ("H100", "A100-80GB:2", "any"), or a list of choices, best first.
            cpu: cores to reserve, or (request, limit).
            memory: MiB to reserve, or (request, limit).
            timeout: seconds one input may run before it fails (at most 86400).
            startup_timeout: seconds a container may take to be ready, @enter hooks included.
            retries: how many times a failed input is tried again, or a firebox.Retries.
            secrets: firebox.Secret objects whose variables its containers' environment gets.
            env: environment variables for its containers, set over those of the secrets.
            volumes: firebox.Volume objects to mount, as {"/mount/path": volume}.
            min_containers: containers kept running even when there is no input.
            max_containers: the most containers it runs at once.
            buffer_containers: idle containers kept ready beyond those the inputs need.
            scaledown_window: seconds an idle container waits for input before it stops.
            max_inputs: inputs one container runs at once (@firebox.concurrent says more).
            single_use_containers: each container runs one input, then stops.
            block_network: its containers cannot reach the network.
            isolation: how its containers are walled: "namespaces", "gvisor" or "process".
            schedule: run it on a firebox.Cron(...) or firebox.Period(...) schedule.
            name: the name it is registered under; the function's own name when not given.
            is_generator: whether it yields its results; read from the function if not given.
            serialized: send the function itself (pickled), so it may be defined anywhere.
            region: accepted for Modal compatibility; it runs on this server's machines.
            cloud: accepted for Modal compatibility; it runs on this server's machines.
            ephemeral_disk: accepted for Modal compatibility; not acted on.
            enable_memory_snapshot: start containers from a memory snapshot: a template
                that imported the code (and ran @enter(snap=True) hooks) once (docs/snapshots.md).
            nonpreemptible: accepted for Modal compatibility; not acted on.
            i6pn: accepted for Modal compatibility; not acted on.
            restrict_modal_access: accepted for Modal compatibility; not acted on.
            experimental_options: accepted for Modal compatibility; not acted on.
            network_file_systems: not supported yet; refused unless empty.
            cloud_bucket_mounts: not supported yet; refused unless empty.
            proxy: not supported yet; refused unless None.
            kwargs: none are taken; an old or misspelt option is refused with what to write.
        """
        if _warn_parentheses_missing is not None:
            raise InvalidError("Use @app.function() with parentheses.")
        options = dict(
            image=image, gpu=gpu, cpu=cpu, memory=memory, timeout=timeout,
            startup_timeout=startup_timeout, retries=retries, secrets=secrets, env=env,
            volumes=volumes, min_containers=min_containers, max_containers=max_containers,
            buffer_containers=buffer_containers, scaledown_window=scaledown_window,
            max_inputs=max_inputs, single_use_containers=single_use_containers,
            block_network=block_network, isolation=isolation, region=region, cloud=cloud,
            ephemeral_disk=ephemeral_disk, enable_memory_snapshot=enable_memory_snapshot,
            nonpreemptible=nonpreemptible, i6pn=i6pn, restrict_modal_access=restrict_modal_access,
            experimental_options=experimental_options, network_file_systems=network_file_systems,
            cloud_bucket_mounts=cloud_bucket_mounts, proxy=proxy,
        )
        base = function_spec(options, kwargs, self._image, self._attached)
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
            if partial is not None and (partial.web is not None or partial.model):
                check_web(fname, spec, partial)
            fn = Function(name=fname, spec=spec, raw_f=raw, app=self)
            if serialized:
                fn._serialized = raw  # type: ignore[attr-defined]
            self._add_function(fname, fn, raw)
            return fn

        return wrap

    def cls(
        self,
        _warn_parentheses_missing: Any = None,
        *,
        image: Image | None = None,
        gpu: str | Sequence[str] | None = None,
        cpu: float | tuple[float, float] | None = None,
        memory: int | tuple[int, int] | None = None,
        timeout: float = wire_spec.DEFAULTS["timeout"],
        startup_timeout: float | None = None,
        retries: int | Retries | None = None,
        secrets: Sequence[Secret] | None = None,
        env: dict[str, str | None] | None = None,
        volumes: dict[str, Volume] | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: float | None = None,
        max_inputs: int | None = None,
        single_use_containers: bool = False,
        block_network: bool = False,
        isolation: wire_spec.Isolation | None = None,
        serialized: bool = False,
        region: str | Sequence[str] | None = None,
        cloud: str | None = None,
        ephemeral_disk: int | None = None,
        enable_memory_snapshot: bool = False,
        nonpreemptible: bool = False,
        i6pn: bool | None = None,
        restrict_modal_access: bool = False,
        experimental_options: dict[str, Any] | None = None,
        network_file_systems: dict[str, Any] | None = None,
        cloud_bucket_mounts: dict[str, Any] | None = None,
        proxy: Any = None,
        **kwargs: Any,
    ) -> Callable[[type], Cls]:
        """Serve the decorated class's @firebox.method()s from containers:
        `@app.cls(gpu="H100")`; its @enter() hooks run once in each container.

        Args:
            image: the Image its containers run; the App's image when not given.
            gpu: a GPU type ("H100", "A100-80GB:2", "any"), or a list of choices, best first.
            cpu: cores to reserve, or (request, limit).
            memory: MiB to reserve, or (request, limit).
            timeout: seconds one input may run before it fails (at most 86400).
            startup_timeout: seconds a container may take to be ready, @enter hooks included.
            retries: how many times a failed input is tried again, or a firebox.Retries.
            secrets: firebox.Secret objects whose variables its containers' environment gets.
            env: environment variables for its containers, set over those of the secrets.
            volumes: firebox.Volume objects to mount, as {"/mount/path": volume}.
            min_containers: containers kept running even when there is no input.
            max_containers: the most containers it runs at once.
            buffer_containers: idle containers kept ready beyond those the inputs need.
            scaledown_window: seconds an idle container waits for input before it stops.
            max_inputs: inputs one container runs at once (@firebox.concurrent says more).
            single_use_containers: each container runs one input, then stops.
            block_network: its containers cannot reach the network.
            isolation: how its containers are walled: "namespaces", "gvisor" or "process".
            serialized: send the class itself (pickled), so it may be defined anywhere.
            region: accepted for Modal compatibility; it runs on this server's machines.
            cloud: accepted for Modal compatibility; it runs on this server's machines.
            ephemeral_disk: accepted for Modal compatibility; not acted on.
            enable_memory_snapshot: start containers from a memory snapshot: a template
                that imported the code (and ran @enter(snap=True) hooks) once (docs/snapshots.md).
            nonpreemptible: accepted for Modal compatibility; not acted on.
            i6pn: accepted for Modal compatibility; not acted on.
            restrict_modal_access: accepted for Modal compatibility; not acted on.
            experimental_options: accepted for Modal compatibility; not acted on.
            network_file_systems: not supported yet; refused unless empty.
            cloud_bucket_mounts: not supported yet; refused unless empty.
            proxy: not supported yet; refused unless None.
            kwargs: none are taken; an old or misspelt option is refused with what to write.
        """
        if _warn_parentheses_missing is not None:
            raise InvalidError("Use @app.cls() with parentheses.")
        options = dict(
            image=image, gpu=gpu, cpu=cpu, memory=memory, timeout=timeout,
            startup_timeout=startup_timeout, retries=retries, secrets=secrets, env=env,
            volumes=volumes, min_containers=min_containers, max_containers=max_containers,
            buffer_containers=buffer_containers, scaledown_window=scaledown_window,
            max_inputs=max_inputs, single_use_containers=single_use_containers,
            block_network=block_network, isolation=isolation, region=region, cloud=cloud,
            ephemeral_disk=ephemeral_disk, enable_memory_snapshot=enable_memory_snapshot,
            nonpreemptible=nonpreemptible, i6pn=i6pn, restrict_modal_access=restrict_modal_access,
            experimental_options=experimental_options, network_file_systems=network_file_systems,
            cloud_bucket_mounts=cloud_bucket_mounts, proxy=proxy,
        )
        base = function_spec(options, kwargs, self._image, self._attached)

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
            for attr, value in class_attributes(user_cls).items():  # inherited ones too
                if isinstance(value, PartialFunction) and value.flags & {"method", "batched"}:
                    raw = value.raw_f
                    gen = value.is_generator
                    if gen is None:
                        gen = inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw)
                    methods[attr] = {"is_generator": gen, "batched": "batched" in value.flags}
                    if "batched" in value.flags:
                        batching = _concurrency_spec(value)
                if isinstance(value, PartialFunction) and (value.web is not None or value.model):
                    methods[attr] = web_method(user_cls.__name__, attr, value, base)
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
            check_web_parameters(user_cls.__name__, methods, spec["parameters"])
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

    @property
    def image(self) -> Image | None:
        """The image of the app's functions that name none (App(image=...))."""
        return self._image

    def local_entrypoint(self, _warn_parentheses_missing: Any = None, *,
                         name: str | None = None) -> Callable[[Any], Any]:
        if _warn_parentheses_missing is not None:
            raise InvalidError("Use @app.local_entrypoint() with parentheses.")

        def wrap(f: Any) -> Any:
            self._entrypoints[name or f.__name__] = f
            return f

        return wrap

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
            interactive: bool = False, environment_name: str | None = None) -> Any:
        """A context in which the app's functions run: `with app.run(): f.remote()`; in
        environment_name (by default the client's), where the objects it names are found."""
        return RunContext(self, detach=detach, show_logs=show_logs,
                          environment_name=environment_name)

    def deploy(self, *, name: str | None = None, tag: str = "",
               environment_name: str | None = None) -> App:
        """Deploy the app (to environment_name, by default the client's)."""
        _sync.run(deploy(self, name or self.name, tag, environment_name))
        return self

    @_sync.live_method
    async def stop(self) -> None:
        if self.app_id is None:
            raise InvalidError("The app is not running.")
        await client_mod.current().request("POST", f"/v1/apps/{self.app_id}/stop")

    @classmethod
    def lookup(cls, name: str, *, create_if_missing: bool = False,
               environment_name: str | None = None) -> App:
        """The deployed app called name (in environment_name, by default the client's)."""
        app = cls(name)

        async def find() -> None:
            c = client_mod.current()
            apps = (await c.request("GET", "/v1/apps", environment=environment_name))["apps"]
            for a in apps:
                if a["name"] == name and a["state"] == "deployed":
                    app.app_id = a["app_id"]
                    return
            if not create_if_missing:
                raise NotFoundError(f"No deployed app named '{name}'.")
            resp = await c.request("POST", "/v1/apps", body={"name": name, "mode": "deploy"},
                                   environment=environment_name)
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


def _concurrency_spec(p: PartialFunction) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if "concurrent" in p.flags:
        spec["max_inputs"], spec["target_inputs"] = p.max_inputs, p.target_inputs
    if "batched" in p.flags:
        spec["batch_max_size"], spec["batch_wait_ms"] = p.batch_max_size, p.batch_wait_ms
    return spec


__all__ = ["App", "Retries"]
