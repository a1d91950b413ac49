"""A function's spec, as the SDK sends it and the control plane stores it: its keys
(FunctionSpec), the defaults the control plane applies to what it leaves out, and the bounds
that the SDK's option checks and the server's validation (server/core/specs.py) both use.

No pydantic here: the SDK and every container import this module.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Isolation = Literal["process", "namespaces", "gvisor"]
ISOLATION_MODES: tuple[Isolation, ...] = ("process", "namespaces", "gvisor")

# ---- bounds (inclusive, except that timeouts, cpu and memory must be over 0) ----------------

TIMEOUT_MAX = 86400  # seconds: timeout and startup_timeout
CPU_MAX = 4096  # cores
MEMORY_MAX = 1 << 30  # MiB
INPUTS_MAX = 100_000  # max_inputs, target_inputs and batch_max_size, as the server takes them
BATCH_WAIT_MS_MAX = 3_600_000  # batch_wait_ms, as the server takes it
CONTAINERS_MAX = 10_000  # min_containers, max_containers, buffer_containers
SCALEDOWN_WINDOW_MIN, SCALEDOWN_WINDOW_MAX = 2, 3600  # seconds
# What @batched and with_batching accept (Modal's bounds), within the server's.
BATCH_SIZE_MAX = 1000
BATCH_WAIT_MS_SDK_MAX = 600_000
# A Retries policy.
RETRIES_MAX = 10
BACKOFF_MIN, BACKOFF_MAX = 1.0, 10.0
INITIAL_DELAY_MAX = 60.0  # seconds, from 0
MAX_DELAY_MIN, MAX_DELAY_MAX = 1.0, 60.0  # seconds
BACKOFF_DEFAULT, INITIAL_DELAY_DEFAULT, MAX_DELAY_DEFAULT = 2.0, 1.0, 60.0

# ---- what the control plane applies to a key a spec leaves out --------------------------------

DEFAULTS: dict[str, Any] = {
    "timeout": 300.0,
    "startup_timeout": None,
    "cpu": 0.125,
    "memory": 128,
    "retries": None,
    "max_inputs": 1,
    "target_inputs": None,
    "batch_max_size": None,
    "batch_wait_ms": None,
    "min_containers": 0,
    "max_containers": None,
    "buffer_containers": 0,
    "scaledown_window": 60.0,
    "single_use_containers": False,
    "memory_snapshot": False,
    "cpu_limit": None,
    "memory_limit": None,
    "gpu": None,  # [{"type": "H100", "count": 2}, ...]: acceptable choices, best first
    "isolation": None,  # None: the server's default
}


# ---- the keys (tests/test_spec.py holds them to server/core/specs.py's models) ----------------


class Code(TypedDict):
    module: str
    files: dict[str, str]  # path in the app -> digest


class ModelApi(TypedDict, total=False):
    """@model_api: the model names a web function's engine serves through the gateway."""

    names: list[str]
    adapters: str | None  # the mount path of the Volume holding LoRA adapters
    routing: Literal["prefix", "least_loaded"]


class Web(TypedDict, total=False):
    type: Literal["fastapi", "asgi", "wsgi", "web_server"]
    method: str | None
    label: str | None
    docs: bool
    requires_proxy_auth: bool
    port: int | None
    startup_timeout: float | None
    model: ModelApi | None


class Method(TypedDict, total=False):
    is_generator: bool
    batched: bool
    web: Web | None


class Parameter(TypedDict, total=False):
    type: Literal["int", "str", "bytes", "bool"]
    init: bool
    has_default: bool


class Retries(TypedDict, total=False):
    max_retries: int
    backoff_coefficient: float
    initial_delay: float
    max_delay: float


class Gpu(TypedDict, total=False):
    type: str
    count: int


class Image(TypedDict, total=False):
    image_id: str
    layers: list[str]
    env: dict[str, str]
    workdir: str | None
    # A registry image's: the server fills it from its own record (plane.resolve_image).
    config: dict[str, Any]


class Schedule(TypedDict, total=False):
    cron: str | None
    timezone: str
    period: float | None


class Resources(TypedDict, total=False):
    """The options a with_options variant may change, too."""

    timeout: float | None
    startup_timeout: float | None
    cpu: float | None
    cpu_limit: float | None
    memory: int | None
    memory_limit: int | None
    retries: Retries | None
    max_inputs: int | None
    target_inputs: int | None
    batch_max_size: int | None
    batch_wait_ms: int | None
    min_containers: int | None
    max_containers: int | None
    buffer_containers: int | None
    scaledown_window: float | None
    single_use_containers: bool | None
    memory_snapshot: bool | None  # enable_memory_snapshot=True: containers start from a template
    gpu: list[Gpu] | None
    isolation: Isolation | None
    secrets: list[str] | None
    volumes: dict[str, str] | None  # mount path -> volume id
    isolation_by_operator: bool | None  # set by the server, never taken from a client


class FunctionSpec(Resources, total=False):
    name: str | None
    kind: Literal["function", "class"]
    qualname: str
    module: str | None
    code: Code | None
    serialized: str | None  # the digest of a pickled definition (serialized=True)
    is_generator: bool
    is_async: bool
    methods: dict[str, Method] | None
    parameters: dict[str, Parameter] | None
    web: Web | None
    schedule: Schedule | None
    image: Image | None
    block_network: bool | None
    region: str | list[str] | None
    cloud: str | None
