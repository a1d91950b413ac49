"""Modal's module layout: what apps import from `modal.functions`, `modal.volume`, ... imports
from `firebox.<the same module>`. MODAL lists each module's public names in Modal's client
(1.6.4, read from its wheel); each is either provided here, as the same object as firebox's own,
or listed as not provided yet, so a name Modal has is never silently missing."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import firebox
from firebox import experimental

# module -> (names firebox provides, names Modal has that firebox does not provide yet)
MODAL: dict[str, tuple[list[str], list[str]]] = {
    "functions": (["Function", "FunctionCall"], ["FunctionAutoscalerManager"]),
    "queue": (["Queue"], ["QueueManager"]),
    "dict": (["Dict"], ["DictManager"]),
    "volume": (["FileEntry", "FileEntryType", "Volume"],
               ["AbstractVolumeUploadContextManager", "VolumeManager",
                "VolumeUploadContextManager", "VolumeUploadContextManager2"]),
    "secret": (["Secret"], ["SecretManager"]),
    "sandbox": (["Sandbox"], ["Probe", "SidecarContainer", "SidecarManager"]),
    "image": (["Image"], []),
    "app": (["App"], ["AppSandboxesManager", "LocalEntrypoint"]),
    "cls": (["Cls", "Obj", "parameter"], ["is_parameter"]),
    "exception": (["AlreadyExistsError", "AuthError", "ConnectionError", "DeserializationError",
                   "Error", "ExecutionError", "FunctionTimeoutError", "ImageBuildError",
                   "InputCancellation", "InvalidError", "NotFoundError", "OutputExpiredError",
                   "RemoteError", "SandboxTerminatedError", "SandboxTimeoutError",
                   "SerializationError"],
                  ["AsyncUsageWarning", "ClientClosed", "ConflictError", "DataLossError",
                   "DeprecationError", "ExecTimeoutError", "InteractiveTimeoutError",
                   "InternalAPIWarning", "InternalError", "InternalFailure", "LogsFetchError",
                   "ModuleNotMountable", "MountUploadTimeoutError", "PermissionDeniedError",
                   "RequestSizeError", "ResourceExhaustedError",
                   "SandboxFilesystemDirectoryNotEmptyError", "SandboxFilesystemError",
                   "SandboxFilesystemFileTooLargeError", "SandboxFilesystemIsADirectoryError",
                   "SandboxFilesystemNotADirectoryError", "SandboxFilesystemNotFoundError",
                   "SandboxFilesystemPathAlreadyExistsError", "SandboxFilesystemPermissionError",
                   "ServerWarning", "ServiceError", "SnapshotCreationError", "TimeoutError",
                   "UnimplementedError", "UserCodeException", "VersionError",
                   "VolumeUploadTimeoutError", "WorkspaceManagementError",
                   "simulate_preemption"]),
    "container_process": (["ContainerProcess"], []),
    "io_streams": (["StreamReader", "StreamWriter"], []),
    "partial_function": (["PartialFunction", "asgi_app", "batched", "concurrent", "enter", "exit",
                          "fastapi_endpoint", "method", "web_endpoint", "web_server",
                          "wsgi_app"], ["clustered", "sessioned"]),
    "retries": (["Retries"], ["RetryManager"]),
    "schedule": (["Cron", "Period", "Schedule"], []),
    "output": (["enable_output"], []),
    "call_graph": (["InputInfo", "InputStatus"], []),
    "experimental": (["AppInfo", "InvalidError", "list_deployed_apps", "stop_app"],
                     ["AppLifecycle", "AppendResult", "ClusterInfo", "ClusterReservation",
                      "ClusterReservationTask", "DockerfileSpec", "Entry", "IdempotencyConflict",
                      "ImageBuilderVersion", "OutboundPolicy", "ServerManager", "Stream",
                      "StreamInfo", "StreamToken", "StreamWriter", "clustered", "flash_forward",
                      "flash_get_containers", "get_app_lifecycle", "get_app_objects",
                      "get_cluster_info", "get_fabric_peers", "get_local_input_concurrency",
                      "http_server", "image_delete", "list_cluster_reservations",
                      "server_forward", "set_local_input_concurrency", "stop_fetching_inputs"]),
}


@pytest.mark.parametrize("module", sorted(MODAL))
def test_modal_module_names_import_from_firebox(module: str):
    provided, not_yet = MODAL[module]
    mod = importlib.import_module(f"firebox.{module}")
    missing = [name for name in provided if not hasattr(mod, name)]
    assert not missing, f"firebox.{module} lacks {missing}"
    arrived = [name for name in not_yet if hasattr(mod, name)]
    assert not arrived, f"firebox.{module} now has {arrived}: move them to the provided list"
    for name in provided:  # the same objects as the package's own, not copies
        if hasattr(firebox, name):
            assert getattr(mod, name) is getattr(firebox, name), f"firebox.{module}.{name}"


def test_the_modal_import_forms_apps_use():
    from firebox.cls import Cls
    from firebox.functions import Function, FunctionCall
    from firebox.volume import FileEntryType

    assert Function is firebox.Function and FunctionCall is firebox.FunctionCall
    assert Cls is firebox.Cls and FileEntryType.DIRECTORY
    sandbox = importlib.import_module("firebox.sandbox")  # `import modal.sandbox`
    assert sandbox.Sandbox is firebox.Sandbox


def test_a_plain_import_reaches_modal_modules_as_attributes():
    # `def run(p: modal.container_process.ContainerProcess)` with only `import modal` above it.
    code = ("import firebox as modal\n"
            + "".join(f"modal.{module}\n" for module in sorted(MODAL)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_experimental_lists_and_stops_deployed_apps(server, tmp_path):
    path = tmp_path / "stoppable.py"
    path.write_text("import firebox\napp = firebox.App('test-experimental-stop')\n\n"
                    "@app.function()\ndef f():\n    return 1\n")
    assert server.cli("deploy", str(path)).returncode == 0
    listed = {a.name: a for a in experimental.list_deployed_apps()}
    assert listed["test-experimental-stop"].app_id.startswith("ap-")
    assert listed["test-experimental-stop"].containers == 0
    experimental.stop_app("test-experimental-stop")
    assert "test-experimental-stop" not in {a.name for a in experimental.list_deployed_apps()}
    with pytest.raises(firebox.exception.NotFoundError, match="No deployed app named 'gone-app'"):
        experimental.stop_app("gone-app")
