"""What a function's spec may hold, checked when it is registered and again when the server
loads it: a spec that would make the scheduler, the ingress or the timers fail is refused with
the field at fault, and is never stored. Its keys, defaults and bounds are wire/spec.py's."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from ...wire import spec
from .errors import invalid_request, problems

Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Label = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=1024)]
Id = Annotated[str, Field(max_length=64)]
Timeout = Annotated[float, Field(gt=0, le=spec.TIMEOUT_MAX, allow_inf_nan=False)]
Cores = Annotated[float, Field(gt=0, le=spec.CPU_MAX, allow_inf_nan=False)]
MiB = Annotated[int, Field(gt=0, le=spec.MEMORY_MAX)]
Inputs = Annotated[int, Field(ge=1, le=spec.INPUTS_MAX)]


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Code(Part):
    module: Text
    files: dict[Annotated[str, Field(max_length=4096)], Digest]


class ModelApi(Part):
    names: Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")]],
                     Field(min_length=1, max_length=64)]
    adapters: Annotated[str, Field(pattern=r"^/", max_length=4096)] | None = None
    routing: Literal["prefix", "least_loaded"] = "prefix"


class Web(Part):
    type: Literal["fastapi", "asgi", "wsgi", "web_server"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] | None = None
    label: Label | None = None
    docs: StrictBool = False
    requires_proxy_auth: StrictBool = False
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    startup_timeout: Timeout | None = None
    model: ModelApi | None = None

    @model_validator(mode="after")
    def _port(self) -> Web:
        if self.type == "web_server" and self.port is None:
            raise ValueError("a web_server endpoint needs the port it serves on")
        return self


class Method(Part):
    is_generator: StrictBool = False
    batched: StrictBool = False
    web: Web | None = None


class Parameter(Part):
    type: Literal["int", "str", "bytes", "bool"]
    init: StrictBool = True
    has_default: StrictBool = False


class Retries(Part):
    max_retries: Annotated[int, Field(ge=0, le=spec.RETRIES_MAX)]
    backoff_coefficient: Annotated[float, Field(ge=spec.BACKOFF_MIN, le=spec.BACKOFF_MAX,
                                                allow_inf_nan=False)] = spec.BACKOFF_DEFAULT
    initial_delay: Annotated[float, Field(ge=0, le=spec.INITIAL_DELAY_MAX,
                                          allow_inf_nan=False)] = spec.INITIAL_DELAY_DEFAULT
    max_delay: Annotated[float, Field(ge=spec.MAX_DELAY_MIN, le=spec.MAX_DELAY_MAX,
                                      allow_inf_nan=False)] = spec.MAX_DELAY_DEFAULT


class Gpu(Part):
    type: Annotated[str, Field(min_length=1, max_length=64)]
    count: Annotated[int, Field(ge=1, le=64)] = 1


class Image(Part):
    image_id: Id
    layers: list[Id] = []
    env: dict[str, str] = {}
    workdir: Text | None = None
    config: dict[str, Any] = {}  # replaced by the server's own record (plane.resolve_image)


class Schedule(Part):
    cron: Annotated[str, Field(max_length=256)] | None = None
    timezone: Annotated[str, Field(max_length=64)] = "UTC"
    period: Annotated[float, Field(ge=1, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        if (self.cron is None) == (self.period is None):
            raise ValueError("a schedule is either {'cron': ...} or {'period': seconds}")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ValueError(f"{self.cron!r} is not a valid cron expression")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        return self


class Resources(Part):
    """The options a with_options variant may change, too."""

    timeout: Timeout | None = None
    startup_timeout: Timeout | None = None
    cpu: Cores | None = None
    cpu_limit: Cores | None = None
    memory: MiB | None = None
    memory_limit: MiB | None = None
    retries: Retries | None = None
    max_inputs: Inputs | None = None
    target_inputs: Inputs | None = None
    batch_max_size: Inputs | None = None
    batch_wait_ms: Annotated[int, Field(ge=0, le=spec.BATCH_WAIT_MS_MAX)] | None = None
    min_containers: Annotated[int, Field(ge=0, le=spec.CONTAINERS_MAX)] | None = None
    max_containers: Annotated[int, Field(ge=1, le=spec.CONTAINERS_MAX)] | None = None
    buffer_containers: Annotated[int, Field(ge=0, le=spec.CONTAINERS_MAX)] | None = None
    scaledown_window: Annotated[float, Field(ge=spec.SCALEDOWN_WINDOW_MIN,
                                             le=spec.SCALEDOWN_WINDOW_MAX,
                                             allow_inf_nan=False)] | None = None
    single_use_containers: StrictBool | None = None
    memory_snapshot: StrictBool | None = None  # enable_memory_snapshot=True
    gpu: list[Gpu] | None = None
    isolation: spec.Isolation | None = None
    secrets: list[Id] | None = None
    volumes: dict[Annotated[str, Field(max_length=4096)], Id] | None = None
    # Set by the server, never taken from a client: an operator chose this isolation.
    isolation_by_operator: StrictBool | None = None

    @model_validator(mode="after")
    def _ranges(self) -> Resources:
        if (self.min_containers is not None and self.max_containers is not None
                and self.min_containers > self.max_containers):
            raise ValueError("min_containers cannot be more than max_containers")
        if self.cpu_limit is not None and self.cpu is not None and self.cpu_limit < self.cpu:
            raise ValueError("cpu_limit cannot be less than the cpu request")
        if (self.memory_limit is not None and self.memory is not None
                and self.memory_limit < self.memory):
            raise ValueError("memory_limit cannot be less than the memory request")
        return self


class FunctionSpec(Resources):
    name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    kind: Literal["function", "class"] = "function"
    qualname: Text
    module: Text | None = None
    code: Code | None = None
    serialized: Digest | None = None
    is_generator: StrictBool = False
    is_async: StrictBool = False
    methods: dict[Annotated[str, Field(max_length=256)], Method] | None = None
    parameters: dict[Annotated[str, Field(max_length=256)], Parameter] | None = None
    web: Web | None = None
    schedule: Schedule | None = None
    image: Image | None = None
    block_network: StrictBool | None = None
    region: Text | list[Text] | None = None
    cloud: Text | None = None

    @model_validator(mode="after")
    def _code(self) -> FunctionSpec:
        if self.serialized is None and self.module is None:
            raise ValueError("a function needs the module it is defined in, or serialized code")
        webs = [self.web] + [m.web for m in (self.methods or {}).values()]
        for web in webs:
            adapters = web.model.adapters if web is not None and web.model else None
            if adapters is not None and adapters not in (self.volumes or {}):
                raise ValueError(f"model_api(adapters={adapters!r}) must be the mount path of "
                                 "one of the function's volumes")
        return self


def check_spec(name: str, spec: Any) -> dict[str, Any]:
    """The spec as stored: validated, with only the keys the client gave."""
    try:
        return FunctionSpec.model_validate(spec).model_dump(exclude_unset=True)
    except ValidationError as exc:
        raise invalid_request(f"The spec of function '{name}'", exc) from None


def check_options(options: Any) -> dict[str, Any]:
    try:
        return Resources.model_validate(options).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise invalid_request("The options of the variant", exc) from None


def _problem(model: type[BaseModel], value: Any) -> str | None:
    try:
        model.model_validate(value)
    except ValidationError as exc:
        return problems(exc, limit=3)
    return None


def spec_problem(spec: Any) -> str | None:
    """What is wrong with a stored spec, or None: a row written before these checks existed
    (or by hand) must not stop the server from starting."""
    return _problem(FunctionSpec, spec)


def options_problem(options: Any) -> str | None:
    return _problem(Resources, options or {})
