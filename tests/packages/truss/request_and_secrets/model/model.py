"""Everything a Model is given: config, data_dir, secrets; a bundled package; the request;
a starlette Response of its own; is_healthy."""

import os
from pathlib import Path

import fastapi
import helper
import tabulate
from starlette.responses import Response


class Model:
    def __init__(self, config, data_dir, secrets):
        self._config = config
        self._data_dir = data_dir
        self._secrets = secrets
        self._healthy = True

    def load(self):
        self._weights = (Path(self._data_dir) / "weights.txt").read_text().strip()

    def is_healthy(self):
        return self._healthy

    def predict(self, model_input, request: fastapi.Request):
        if model_input.get("sick"):
            self._healthy = False
        if model_input.get("teapot"):
            return Response(b"short and stout", status_code=418)
        return {"weights": self._weights, "helper": helper.VALUE,
                "tabulate": tabulate.__version__, "greeting": os.environ.get("GREETING"),
                "token": self._secrets["hf_access_token"],
                "unused": self._secrets["unused_secret"],
                "built": Path("/opt/built/marker").read_text().strip(),
                "path": request.url.path}
