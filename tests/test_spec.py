"""The function spec's contract (wire/spec.py) and the server's validation of it
(server/core/specs.py) name the same keys, and the defaults are applied to those keys."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

from firebox.backends import isolation
from firebox.server.core import specs
from firebox.wire import spec

PAIRS = [
    (spec.FunctionSpec, specs.FunctionSpec),
    (spec.Resources, specs.Resources),
    (spec.Code, specs.Code),
    (spec.Web, specs.Web),
    (spec.Method, specs.Method),
    (spec.Parameter, specs.Parameter),
    (spec.Retries, specs.Retries),
    (spec.Gpu, specs.Gpu),
    (spec.Image, specs.Image),
    (spec.Schedule, specs.Schedule),
]


@pytest.mark.parametrize(("keys", "model"), PAIRS, ids=[k.__name__ for k, _ in PAIRS])
def test_the_contract_and_the_servers_model_name_the_same_keys(keys, model):
    assert set(typing.get_type_hints(keys)) == set(model.model_fields)


def test_every_default_is_a_key_of_the_spec():
    assert set(spec.DEFAULTS) <= set(typing.get_type_hints(spec.FunctionSpec))


def test_the_retries_model_defaults_are_the_contracts():
    fields = specs.Retries.model_fields
    assert (fields["backoff_coefficient"].default, fields["initial_delay"].default,
            fields["max_delay"].default) == (spec.BACKOFF_DEFAULT, spec.INITIAL_DELAY_DEFAULT,
                                             spec.MAX_DELAY_DEFAULT)


def test_the_isolation_modes_are_the_backends():
    assert spec.ISOLATION_MODES == isolation.MODES
    assert typing.get_args(spec.Isolation) == isolation.MODES


def test_the_sdk_loads_the_contract_without_pydantic():
    """Pydantic is the server's: `import firebox` (every client and container) never pays it."""
    code = "import sys, firebox, firebox.wire.spec; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
