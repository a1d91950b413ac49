"""firebox: self-hosted serverless compute. `import firebox as modal` runs Modal apps."""

# Modal's package loads its modules, so an app may name `modal.container_process.X` after a plain
# `import modal`: firebox's faces of those modules are loaded with it for the same reason.
from . import (  # noqa: F401
    app,
    call_graph,
    cls,
    container_process,
    dict,
    exception,
    experimental,
    functions,
    image,
    io_streams,
    partial_function,
    queue,
    retries,
    sandbox,
    schedule,
    secret,
    volume,
)
from .exception import Error
from .output import enable_output
from .sdk import user_code as _user_code
from .sdk.app import App
from .sdk.cls import Cls
from .sdk.context import current_function_call_id, current_input_id, is_local
from .sdk.dict import Dict
from .sdk.function import Function
from .sdk.function_call import FunctionCall
from .sdk.image import Image
from .sdk.partial import batched, concurrent, enter, exit, method, parameter
from .sdk.queue import Queue
from .sdk.retries import Retries
from .sdk.sandbox import Sandbox
from .sdk.schedule import Cron, Period
from .sdk.secret import Secret
from .sdk.tunnel import Tunnel, forward
from .sdk.unsupported import CloudBucketMount, Mount, NetworkFileSystem, Stub
from .sdk.volume import Volume
from .sdk.web import asgi_app, fastapi_endpoint, model_api, web_endpoint, web_server, wsgi_app

__version__ = "0.1.0"

# A container's runtime reaches the SDK that defined the user's code through wire/user_code.py.
_user_code.register()


__all__ = [
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
    "parameter",
    "web_endpoint",
    "model_api",
    "web_server",
    "wsgi_app",
]
