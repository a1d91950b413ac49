"""A call's requests are one contract: the keys the SDK sends (wire/calls.py) are the keys the
server checks (server/api/requests.py), so neither side can add or rename one alone."""

from __future__ import annotations

import typing

from firebox.server.api import requests as rq
from firebox.wire import calls as wire_calls


def keys(request: type) -> set[str]:
    return set(typing.get_type_hints(request))


def test_the_server_checks_the_keys_the_sdk_sends():
    assert set(rq.PutInputs.model_fields) == keys(wire_calls.CallRequest)
    assert set(rq.GetOutputs.model_fields) == keys(wire_calls.OutputsRequest)


def test_the_server_takes_every_kind_of_call_the_sdk_makes():
    kinds = typing.get_args(wire_calls.Kind)
    assert typing.get_args(rq.PutInputs.model_fields["kind"].annotation) == kinds
    for kind in kinds:
        rq.PutInputs.model_validate({"call_id": "fc-a", "function_id": "fu-a", "kind": kind})
