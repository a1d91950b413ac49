"""Cls: a class whose instances live in containers; Obj: one parameter set of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _sync
from ..exception import InvalidError
from ..wire.user_code import pack_params
from .function import Function, checked_version
from .partial import PartialFunction, parameter_defaults

_TYPES = {"int": int, "str": str, "bytes": bytes, "bool": bool}


class Cls:
    def __init__(
        self,
        *,
        name: str,
        function: Function,
        user_cls: type | None = None,
        lookup: tuple[str, str] | None = None,
    ) -> None:
        self._name = name
        self._function = function
        self._user_cls = user_cls
        self._lookup = lookup

    def __repr__(self) -> str:
        return f"<firebox.Cls {self._name}>"

    def _info(self) -> dict[str, Any]:
        info = self._function._info or self._function._spec
        return info

    def __call__(self, *args: Any, **kwargs: Any) -> Obj:
        if args:
            raise InvalidError(
                f"{self._name}() takes parameters by keyword only, like {self._name}(k=3)."
            )
        if self._user_cls is None and not self._function._info:
            _sync.run(self._function._resolve())
        declared = self._info().get("parameters", {})
        unknown = set(kwargs) - set(declared)
        if unknown:
            raise InvalidError(
                f"{self._name} has no parameter {', '.join(sorted(unknown))}; declare it as "
                "`name: int = firebox.parameter()`."
            )
        defaults = parameter_defaults(self._user_cls) if self._user_cls else {}
        values: dict[str, Any] = {}
        for pname, p in declared.items():
            if pname in kwargs:
                value = kwargs[pname]
                expected = _TYPES[p["type"]]
                if type(value) is not expected:
                    raise InvalidError(
                        f"Parameter '{pname}' of {self._name} must be {p['type']}, "
                        f"not {type(value).__name__}."
                    )
                # Defaults are left out, so the default instance is one pool however it is
                # made: the pool that web methods and min_containers use too.
                if pname not in defaults or value != defaults[pname]:
                    values[pname] = value
            elif not p.get("has_default"):
                raise InvalidError(f"{self._name}() needs a value for parameter '{pname}'.")
        return Obj(self, values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self._info().get("methods", {})
        if name in methods or self._user_cls is None:
            return _UnboundMethod(self._name, name)
        raise AttributeError(f"{self._name} has no method '{name}'")

    def with_options(self, **options: Any) -> Cls:
        return self._derive(self._function.with_options(**options))

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Cls:
        return self._derive(
            self._function.with_concurrency(max_inputs=max_inputs, target_inputs=target_inputs)
        )

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Cls:
        return self._derive(
            self._function.with_batching(max_batch_size=max_batch_size, wait_ms=wait_ms)
        )

    def _derive(self, function: Function) -> Cls:
        return Cls(name=self._name, function=function, user_cls=self._user_cls,
                   lookup=self._lookup)

    @classmethod
    def from_name(cls, app_name: str, name: str, *, version: int | None = None,
                  environment_name: str | None = None, client: Any = None) -> Cls:
        """A deployed class (of the app in environment_name, by default the client's), looked
        up when first used; with version, as that deployed version of the app had it."""
        function = Function(name=name, lookup=(app_name, name), environment_name=environment_name)
        function._version = checked_version(version)
        return cls(name=name, function=function, lookup=(app_name, name))


class Obj:
    """An instance of a Cls with its parameters; its methods are Functions."""

    def __init__(self, cls: Cls, params: dict[str, Any]) -> None:
        self._cls = cls
        self._params = params
        self._packed = pack_params(params)
        self._local: Any = None

    def _local_instance(self) -> Any:
        if self._local is None:
            if self._cls._user_cls is None:
                raise InvalidError(
                    f"{self._cls._name} was looked up by name; .local() needs the class's code."
                )
            self._local = instantiate(self._cls._user_cls, self._params)
            run_enter_hooks(self._local)
        return self._local

    def __getattr__(self, name: str) -> Function:
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self._cls._info().get("methods", {})
        if self._cls._user_cls is None and not methods:
            _sync.run(self._cls._function._resolve())
            methods = self._cls._info().get("methods", {})
        if name not in methods:
            raise AttributeError(
                f"{self._cls._name} has no method '{name}' marked with @firebox.method()."
            )
        local: Callable[[], Any] = self._local_instance
        return self._cls._function._bind(name, self._packed, local, methods[name])


class _UnboundMethod:
    def __init__(self, cls_name: str, method: str) -> None:
        self._where = f"{cls_name}.{method}"
        self._fix = f"{cls_name}().{method}"

    def __getattr__(self, verb: str) -> Any:
        raise InvalidError(
            f"{self._where}.{verb} needs an instance: call {self._fix}.{verb}(...) instead."
        )


def class_attributes(user_cls: type) -> dict[str, Any]:
    """Its attributes with those it inherits, as Python resolves them: an override wins."""
    return {k: v for klass in reversed(user_cls.__mro__) for k, v in vars(klass).items()}


def lifecycle_methods(user_cls: type, flag: str) -> list[PartialFunction]:
    return [value for value in class_attributes(user_cls).values()
            if isinstance(value, PartialFunction) and flag in value.flags]


def instantiate(user_cls: type, params: dict[str, Any]) -> Any:
    obj = user_cls.__new__(user_cls)
    for name, value in {**parameter_defaults(user_cls), **params}.items():
        setattr(obj, name, value)
    return obj


def run_enter_hooks(obj: Any) -> None:
    """@enter(snap=True) hooks first, then the others, as a container does at start."""
    hooks = lifecycle_methods(type(obj), "enter")
    for hook in [h for h in hooks if h.snap] + [h for h in hooks if not h.snap]:
        hook.raw_f(obj)
