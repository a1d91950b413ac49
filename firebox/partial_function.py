"""The decorators of functions and methods, as `modal.partial_function` names them."""

from .sdk.partial import PartialFunction, batched, concurrent, enter, exit, method
from .sdk.web import asgi_app, fastapi_endpoint, web_endpoint, web_server, wsgi_app

__all__ = ["PartialFunction", "asgi_app", "batched", "concurrent", "enter", "exit",
           "fastapi_endpoint", "method", "web_endpoint", "web_server", "wsgi_app"]
