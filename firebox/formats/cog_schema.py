"""Inside a Cog container: the predictor's OpenAPI schema, in the shape `cog build` writes to
.cog/openapi_schema.json, from the cog SDK's own reading of the predictor's type hints. Cog's
server (coglet) validates each prediction's input against it and serves it at
/openapi.json; a Replicate version carries it as its openapi_schema."""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

STATUS = ["starting", "processing", "succeeded", "canceled", "failed"]
EVENTS = ["start", "output", "logs", "completed"]


def predictor_schema(package: Path, ref: str, mode: str = "predict") -> dict[str, Any]:
    """The OpenAPI document of the predictor `file.py:Name` (a class or a function) in
    package; `mode` is "predict" or "train"."""
    from cog import _adt, _inspector  # the image's cog SDK: only there, never on the server

    file, _, name = ref.partition(":")
    sys.path.insert(0, str(package))
    module = Path(file).with_suffix("").as_posix().replace("/", ".")
    info = _inspector.create_predictor(module, name)
    predictor = getattr(sys.modules[module], name)
    if inspect.isclass(predictor):
        picked = (predictor.train if mode == "train" else
                  _inspector._selected_predict_method(predictor, f"{module}.{name}")[1])
    else:
        picked = predictor
    given = _given_defaults(picked)
    optional = (_adt.Repetition.OPTIONAL, _adt.Repetition.OPTIONAL_REPEATED)
    properties: dict[str, Any] = {}
    required = []
    for field in sorted(info.inputs.values(), key=lambda f: f.order):
        prop: dict[str, Any] = {**field.type.json_type(),
                                "title": field.name.replace("_", " ").title(),
                                "x-order": field.order}
        if field.description:
            prop["description"] = field.description
        if field.default is not None:
            prop["default"] = field.type.json_encode(field.default)
        elif field.type.repetition in optional or field.name in given:
            prop["nullable"] = True
        else:
            required.append(field.name)
        for key, value in (("minimum", field.ge), ("maximum", field.le),
                           ("minLength", field.min_length), ("maxLength", field.max_length),
                           ("pattern", field.regex), ("enum", field.choices),
                           ("deprecated", field.deprecated)):
            if value is not None:
                prop[key] = _whole(value)
        properties[field.name] = prop
    input_schema: dict[str, Any] = {"type": "object", "title": "Input", "properties": properties}
    if required:
        input_schema["required"] = required
    kind = "Training" if mode == "train" else "Prediction"
    path = "/trainings" if mode == "train" else "/predictions"
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {path: {"post": {
            "summary": kind, "operationId": f"{kind.lower()}s",
            "requestBody": {"content": {"application/json": {"schema": {
                "$ref": f"#/components/schemas/{kind}Request"}}}},
            "responses": {"200": {"description": "Successful Response", "content": {
                "application/json": {"schema": {
                    "$ref": f"#/components/schemas/{kind}Response"}}}}}}}},
        "components": {"schemas": {
            "Input": input_schema,
            "Output": info.output.json_type(),
            "Status": {"title": "Status", "type": "string", "enum": STATUS},
            "WebhookEvent": {"title": "WebhookEvent", "type": "string", "enum": EVENTS},
            f"{kind}Request": {"title": f"{kind}Request", "type": "object", "properties": {
                "id": {"title": "Id", "type": "string"},
                "input": {"$ref": "#/components/schemas/Input"},
                "webhook": {"title": "Webhook", "type": "string", "format": "uri"},
                "webhook_events_filter": {"type": "array", "items": {
                    "$ref": "#/components/schemas/WebhookEvent"}}}},
            f"{kind}Response": {"title": f"{kind}Response", "type": "object", "properties": {
                "id": {"title": "Id", "type": "string"},
                "input": {"$ref": "#/components/schemas/Input"},
                "output": {"$ref": "#/components/schemas/Output"},
                "status": {"$ref": "#/components/schemas/Status"},
                "error": {"title": "Error", "type": "string"},
                "logs": {"title": "Logs", "type": "string"},
                "metrics": {"title": "Metrics", "type": "object"}}},
        }},
    }


def _given_defaults(f: Any) -> set[str]:
    """The inputs of f whose default is written out (`Input(default=None)`, `x: str = None`):
    as `cog build` reads the source, an input with no default given is required, one whose
    given default is None is optional; the SDK's objects do not tell the two apart."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(f))))
    except (OSError, TypeError, SyntaxError):
        return set()
    node = tree.body[0]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return set()
    args = node.args.posonlyargs + node.args.args
    pairs = list(zip(args[len(args) - len(node.args.defaults):], node.args.defaults))
    pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d]
    given = set()
    for arg, default in pairs:
        if not (isinstance(default, ast.Call) and getattr(default.func, "id", getattr(
                default.func, "attr", "")) == "Input") or any(
                k.arg == "default" for k in default.keywords):
            given.add(arg.arg)
    return given


def _whole(value: Any) -> Any:
    """2.0 as 2: the SDK keeps ge/le as floats, and an integer input's bounds read better."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


if __name__ == "__main__":  # python -m firebox.formats.cog_schema PACKAGE REF OUT [MODE]
    import json

    _package, _ref, _out = sys.argv[1:4]
    _schema = predictor_schema(Path(_package), _ref, *(sys.argv[4:5] or ["predict"]))
    Path(_out).write_text(json.dumps(_schema))
