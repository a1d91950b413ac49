"""The Modal-compatible surface: public names, rejected old parameters, not-yet-supported names,
and an app written for Modal running with `import firebox as modal`."""

from __future__ import annotations

import inspect

import pytest

import firebox
from firebox.exception import InvalidError, NotSupportedYet

EXPECTED_ALL = [
    "App",
    "CloudBucketMount",
    "Cls",
    "Cron",
    "Dict",
    "Error",
    "Function",
    "FunctionCall",
    "Image",
    "Mount",
    "NetworkFileSystem",
    "Period",
    "Queue",
    "Retries",
    "Sandbox",
    "Secret",
    "Stub",
    "Tunnel",
    "Volume",
    "asgi_app",
    "batched",
    "concurrent",
    "current_function_call_id",
    "current_input_id",
    "enable_output",
    "enter",
    "exception",
    "exit",
    "fastapi_endpoint",
    "forward",
    "is_local",
    "method",
    "model_api",  # firebox's own: the model gateway's (docs/model_api.md)
    "parameter",
    "web_endpoint",
    "web_server",
    "wsgi_app",
]

MODAL_EXCEPTIONS = [
    "AlreadyExistsError",
    "DeserializationError",
    "Error",
    "ExecutionError",
    "FunctionTimeoutError",
    "ImageBuildError",
    "InputCancellation",
    "InvalidError",
    "NotFoundError",
    "OutputExpiredError",
    "RemoteError",
    "SandboxTerminatedError",
    "SandboxTimeoutError",
]


def test_all_is_exactly_the_public_surface():
    assert sorted(firebox.__all__) == sorted(EXPECTED_ALL)
    assert len(set(firebox.__all__)) == len(firebox.__all__)
    for name in firebox.__all__:
        assert hasattr(firebox, name), name
    # Nothing firebox defines is public by accident: every class or function on the package is
    # either listed or private (modules such as firebox.sdk are not names users call).
    for name, value in vars(firebox).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if getattr(value, "__module__", "").startswith("firebox"):
            assert name in firebox.__all__, f"firebox.{name} is public but not in __all__"


def test_exception_module_has_modals_names():
    from firebox import exception

    for name in MODAL_EXCEPTIONS:
        assert hasattr(exception, name), name
        assert name in exception.__all__
    assert issubclass(exception.InputCancellation, BaseException)
    assert not issubclass(exception.InputCancellation, Exception)
    assert issubclass(exception.FunctionTimeoutError, TimeoutError)
    assert exception.InvalidError.__module__ == "firebox.exception"  # the one exceptions module
    assert firebox.Error is exception.Error


@pytest.mark.parametrize(
    ("option", "replacement"),
    [
        ("keep_warm", "min_containers"),
        ("concurrency_limit", "max_containers"),
        ("container_idle_timeout", "scaledown_window"),
        ("allow_concurrent_inputs", "concurrent"),
        ("mounts", "add_local"),
    ],
)
def test_old_parameters_name_their_replacement(option, replacement):
    app = firebox.App("test-compat-old")
    value = [] if option == "mounts" else 1

    def f():
        pass

    with pytest.raises(InvalidError, match=replacement):
        app.function(**{option: value})(f)
    with pytest.raises(InvalidError, match=replacement):
        app.cls(**{option: value})
    with pytest.raises(InvalidError, match=replacement):
        firebox.Function(name="f").with_options(**{option: value})


def test_other_rejected_names():
    app = firebox.App("test-compat-rejected")

    def f():
        pass

    with pytest.raises(InvalidError, match="timeout"):
        app.function(timeout=None)(f)
    with pytest.raises(InvalidError, match="App"):
        firebox.Stub("old")
    with pytest.raises(InvalidError, match="add_local"):
        firebox.Mount()
    with pytest.raises(InvalidError, match="parentheses"):
        app.function(f)


def test_not_supported_yet_is_a_clear_error():
    def f():
        pass

    still_missing = [
        lambda: firebox.Image.micromamba(),
        lambda: firebox.Image.from_aws_ecr("1.dkr.ecr.us-east-1.amazonaws.com/x:1"),
        lambda: firebox.NetworkFileSystem.from_name("x"),
        lambda: firebox.CloudBucketMount("bucket"),
    ]
    for use in still_missing:
        with pytest.raises(NotSupportedYet, match="not supported yet"):
            use()


def test_modal_style_app_runs_unchanged(server):
    result = server.cli("run", "tests/apps/modal_style.py", "--n", "4", "--shout", timeout=120)
    assert result.returncode == 0, result.stderr
    assert (
        "result: HELLO MODAL 14 [3, 3] 16 ['w0', 'w1'] rejected True" in result.stdout
    ), result.stdout + result.stderr
