"""The exception classes under the module name Modal's client uses, so that
`from modal.exception import InvalidError` works as `from firebox.exception import ...`."""

from .exceptions import (
    AlreadyExistsError,
    AuthError,
    ConnectionError,
    DeserializationError,
    Error,
    ExecutionError,
    FunctionTimeoutError,
    ImageBuildError,
    InputCancellation,
    InvalidError,
    NotFoundError,
    NotSupportedYet,
    OutputExpiredError,
    RemoteError,
    SandboxTerminatedError,
    SandboxTimeoutError,
    SerializationError,
)

__all__ = [
    "AlreadyExistsError",
    "AuthError",
    "ConnectionError",
    "DeserializationError",
    "Error",
    "ExecutionError",
    "FunctionTimeoutError",
    "ImageBuildError",
    "InputCancellation",
    "InvalidError",
    "NotFoundError",
    "NotSupportedYet",
    "OutputExpiredError",
    "RemoteError",
    "SandboxTerminatedError",
    "SandboxTimeoutError",
    "SerializationError",
]
