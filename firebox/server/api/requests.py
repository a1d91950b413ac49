"""The shapes of request bodies and queries, checked where a request comes in.

A field of the wrong type, a duration that is NaN, infinite or negative, a key nobody reads:
each is answered with 422 and the fields at fault before a handler, a timer or the database sees
it. Every route that takes a body or a query names its model here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictBytes,
    ValidationError,
)

from ...wire import calls as wire_calls
from ...wire import ids, spec
from ..core.errors import invalid_request

M = TypeVar("M", bound=BaseModel)

MAX_WAIT = 50.0  # seconds a long poll is held before the client asks again

# Durations: finite and never negative, so no timer is ever set for NaN or infinity (one NaN
# deadline in the event loop's heap disorders every timer after it).
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Wait = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=1 << 31)]
Id = Annotated[str, Field(max_length=64)]
Name = Annotated[str, Field(max_length=128)]
Path = Annotated[str, Field(max_length=4096)]


class Body(BaseModel):
    """A request body: unknown keys are refused, so a misspelt option is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def validate(model: type[M], data: Any, what: str = "The request body") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(what, exc) from None


# ---- apps and functions ------------------------------------------------------------------


class CreateApp(Body):
    name: Name | None = None
    mode: Literal["ephemeral", "deploy"] = "ephemeral"


class ListApps(Query):
    limit: Annotated[int, Field(ge=1, le=10_000)] = 200


class AppLogs(Query):
    follow: Literal["0", "1", "true", "false", ""] = ""
    after: Count = 0


class ContainerLogs(Query):
    follow: Literal["0", "1", "true", "false", ""] = ""
    after: Count = 0


class LookupFunction(Query):
    name: Name = ""
    app: Name = ""
    app_id: Id = ""
    version: Annotated[int, Field(ge=1, le=1 << 31)] | None = None  # a deployed version's


class FunctionEntry(Body):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    spec: dict[str, Any]  # checked on its own (specs.FunctionSpec), to name the function


class Deployer(Body):
    """Who deployed, for the history: the client's firebox version and the app's git commit."""

    version: Annotated[str, Field(max_length=32)] = ""
    commit: Annotated[str, Field(max_length=48, pattern=r"^[0-9a-f]*\*?$")] = ""


class RegisterFunctions(Body):
    functions: Annotated[list[FunctionEntry], Field(min_length=1, max_length=1000)]
    tag: Name = ""  # a deploy's label (`firebox deploy --tag`), kept with it in the history
    client: Deployer = Deployer()


class Rollback(Body):
    version: Annotated[int, Field(ge=1)] | None = None  # None: the one before the current
    client: Deployer = Deployer()


class CreateVariant(Body):
    options: dict[str, Any] = {}


class UpdateAutoscaler(Body):
    min_containers: Count | None = None
    max_containers: Annotated[int, Field(ge=1, le=1 << 31)] | None = None
    buffer_containers: Count | None = None
    scaledown_window: Annotated[float, Field(ge=spec.SCALEDOWN_WINDOW_MIN,
                                             le=spec.SCALEDOWN_WINDOW_MAX,
                                             allow_inf_nan=False)] | None = None


class Usage(Query):
    by: Literal["function", "day", "model"] = "function"
    since: Annotated[float, Field(allow_inf_nan=False)] | None = None
    app: Name | None = None


class CreateModelKey(Body):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    models: list[Annotated[str, Field(min_length=1, max_length=260)]] | None = None
    limits: dict[str, Any] = {}


class ModelLimits(Body):
    limits: dict[str, Any]


class UpdateWorkspace(Body):
    isolation: Literal["process", "namespaces", "gvisor"] | None = None


# ---- calls -------------------------------------------------------------------------------


def _call_id(value: str) -> str:
    if not CALL_ID.match(value):
        raise ValueError(f"call_id must look like '{ids.CALL}...', at most {ids.MAX_CALL_ID} "
                         "characters of letters and digits")
    return value


CALL_ID = re.compile(rf"^{ids.CALL}[A-Za-z0-9]{{1,{ids.MAX_CALL_ID - len(ids.CALL)}}}$")


class PutInputs(Body):
    """A wire.calls.CallRequest, checked: its keys, with bounds."""

    call_id: Annotated[str, AfterValidator(_call_id)]
    function_id: Id
    kind: wire_calls.Kind = "call"
    method: Annotated[str, Field(max_length=256)] | None = None
    params: StrictBytes | None = None
    inputs: Annotated[list[tuple[Annotated[int, Field(ge=0, le=1 << 30)], StrictBytes]],
                      Field(max_length=100_000)] = []
    wait: Wait = 0.0
    parent_input_id: Annotated[str, Field(max_length=32)] | None = None


class GetOutputs(Body):
    """A wire.calls.OutputsRequest, checked."""

    after: Count = 0
    wait: Wait = 0.0


# ---- blobs -------------------------------------------------------------------------------


class MissingBlobs(Body):
    digests: Annotated[list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]],
                       Field(max_length=100_000)] = []


# ---- named objects: dicts, queues, volumes, secrets -------------------------------------


class CreateObject(Body):
    name: Name | None = None
    ephemeral: StrictBool = False
    exist_ok: StrictBool = False


class DictKey(Body):
    key: StrictBytes


class DictPut(Body):
    items: Annotated[list[tuple[StrictBytes, StrictBytes]], Field(max_length=100_000)]
    skip_if_exists: StrictBool = False


class DictEntries(Body):
    after: Annotated[str, Field(max_length=64)] = ""


class Empty(Body):
    pass


PartitionKey = Annotated[str, Field(min_length=1)]  # its byte length is checked by the route


class QueuePut(Body):
    values: list[StrictBytes]
    partition: PartitionKey | None = None
    ttl: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    wait: Wait = 0.0


class QueueGet(Body):
    n: Annotated[int, Field(ge=1, le=1 << 20)] = 1
    partition: PartitionKey | None = None
    wait: Wait = 0.0


class QueueItems(Body):
    after: Count = 0
    partition: PartitionKey | None = None
    wait: Wait = 0.0


class QueueLen(Body):
    partition: PartitionKey | None = None
    total: StrictBool = False


class QueueClear(Body):
    partition: PartitionKey | None = None
    all: StrictBool = False


class CreateSecret(Body):
    name: Name | None = None
    env: dict[str, str]
    overwrite: StrictBool = False


class Rename(Body):
    name: Name


class CreateEnvironment(Body):
    name: Name


class DeleteEnvironment(Query):
    force: Literal["0", "1", ""] = ""


VolumeEntry = tuple[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")], Count,
                    Annotated[int, Field(ge=0, le=0o7777)],
                    Annotated[float, Field(allow_inf_nan=False)]]


class VolumeCommit(Body):
    put: dict[Path, VolumeEntry] = {}
    delete: list[Path] = []
    force: StrictBool = True


class VolumeList(Body):
    path: Path = ""
    recursive: StrictBool = False


class VolumeRemove(Body):
    path: Path = ""
    recursive: StrictBool = False


class VolumeCopy(Body):
    src_paths: list[Path] = []
    dst_path: Path = ""
    recursive: StrictBool = False


class VolumeFile(Query):
    path: Path = ""


# ---- sandboxes ---------------------------------------------------------------------------

StrMap = dict[Annotated[str, Field(max_length=4096)], Annotated[str, Field(max_length=1 << 16)]]
Port = Annotated[int, Field(ge=1, le=65535)]


class CreateSandbox(Body):
    app_id: Id
    name: Name | None = None
    args: list[str] = []
    env: StrMap = {}
    secrets: list[Id] = []
    timeout: Seconds | None = None
    idle_timeout: Seconds | None = None
    workdir: Path | None = None
    cpu: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    memory: Annotated[int, Field(ge=32)] | None = None
    image: Id | None = None
    tags: StrMap = {}
    volumes: dict[Path, Id] = {}
    block_network: StrictBool = False
    cidr_allowlist: list[str] | None = None
    # Checked by tunnels.check_ports, whose errors say what a port number is.
    encrypted_ports: list[Annotated[int, Field(ge=-(1 << 63), lt=1 << 63)]] = []
    unencrypted_ports: list[Annotated[int, Field(ge=-(1 << 63), lt=1 << 63)]] = []
    pty: StrictBool = False


class SandboxWait(Body):
    timeout: Wait | None = None


class SandboxTags(Body):
    tags: StrMap = {}


class SandboxExec(Body):
    args: list[str]
    env: StrMap = {}
    secrets: list[Id] = []
    workdir: Path | None = None
    timeout: Seconds | None = None
    pty: StrictBool = False
    pty_size: tuple[Annotated[int, Field(gt=0, lt=10_000)],
                    Annotated[int, Field(gt=0, lt=10_000)]] | None = None


class ContainerExec(Body):
    args: list[str]
    workdir: Path | None = None
    pty: StrictBool = False
    pty_size: tuple[Annotated[int, Field(gt=0, lt=10_000)],
                    Annotated[int, Field(gt=0, lt=10_000)]] | None = None


class ExecResize(Body):
    size: tuple[Annotated[int, Field(gt=0, lt=10_000)], Annotated[int, Field(gt=0, lt=10_000)]]


class SandboxStdin(Body):
    data: StrictBytes = b""
    eof: StrictBool = False


class SandboxFile(Body):
    op: Literal["read", "write", "list", "mkdir", "remove", "stat"]
    path: Path
    data: StrictBytes = b""
    parents: StrictBool | None = None
    recursive: StrictBool | None = None
    append: StrictBool | None = None


class ExecOutput(Query):
    after: Count = 0


class ListSandboxes(Query):
    app_id: Id | None = None


class LookupSandbox(Query):
    app: Name = ""
    name: Name = ""


# ---- tunnels -----------------------------------------------------------------------------


class OpenTunnel(Body):
    port: Port
    unencrypted: StrictBool = False


# ---- images ------------------------------------------------------------------------------

Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
FileEntries = dict[Path, tuple[Digest, Annotated[int, Field(ge=0, le=0o7777)]]]


class ImageStep(Body):
    kind: Literal["pip", "apt", "run", "env", "workdir", "copy", "registry", "user",
                  "entrypoint"]
    label: Annotated[str, Field(max_length=1 << 16)] | None = None
    packages: list[Annotated[str, Field(max_length=4096)]] | None = None
    requirements: list[str] | None = None
    index_url: Path | None = None
    extra_index_url: Path | None = None
    find_links: Path | None = None
    pre: StrictBool | None = None
    extra_options: Path | None = None
    env: StrMap | None = None
    commands: list[str] | None = None
    path: Path | None = None
    files: FileEntries | None = None
    python: FileEntries | None = None
    tag: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\s]+$")] | None = None
    secret_id: Annotated[str, Field(max_length=64)] | None = None
    registry_login: Literal["basic", "gcp"] | None = None  # how secret_id's values log in
    force: Annotated[str, Field(max_length=64)] | None = None  # force_build: a fresh pull
    user: Annotated[str, Field(max_length=256)] | None = None
    args: list[Annotated[str, Field(max_length=1 << 16)]] | None = None


class ImageMount(Body):
    label: Annotated[str, Field(max_length=1 << 16)] | None = None
    files: FileEntries | None = None
    python: FileEntries | None = None


class BuildImage(Body):
    python: Annotated[str, Field(max_length=32)] = ""
    steps: Annotated[list[ImageStep], Field(max_length=1000)] = []
    mounts: Annotated[list[ImageMount], Field(max_length=1000)] = []
