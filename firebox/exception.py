"""The exception classes users catch, with the names Modal's client uses."""

from __future__ import annotations


class Error(Exception):
    """Base class of every error firebox raises on purpose."""


class InvalidError(Error):
    """The request or the app definition is not valid."""


class NotFoundError(Error):
    """A named object (app, function, call) does not exist."""


class AlreadyExistsError(Error):
    """A named object exists already."""


class RemoteError(Error):
    """The control plane failed to do what was asked."""


class ExecutionError(Error):
    """The function failed in a way that could not be reported as its own exception."""


class SerializationError(Error):
    """A value could not be serialized to travel to or from a container."""


class DeserializationError(Error):
    """A value that came back from a container could not be deserialized here."""


class FunctionTimeoutError(Error, TimeoutError):
    """An input ran longer than the function's timeout."""


class SandboxTimeoutError(Error, TimeoutError):
    """A sandbox ran longer than its timeout."""


class SandboxTerminatedError(Error):
    """A sandbox was terminated."""


class OutputExpiredError(Error, TimeoutError):
    """The output of a call is no longer kept."""


class ImageBuildError(Error):
    """An image step failed."""


class AuthError(Error):
    """The token was refused."""


class ConnectionError(Error):
    """The control plane could not be reached."""


class InputCancellation(BaseException):
    """Raised inside a container when its input is cancelled."""


class NotSupportedYet(Error):
    """A part of the Modal surface that firebox does not provide yet."""


class ServerNotInstalledError(Error):
    """The control plane's packages (the `server` extra) are not installed: a client's install."""


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
    "ServerNotInstalledError",
]
