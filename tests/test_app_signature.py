"""@app.function and @app.cls show their options to editors and type checkers: each one a
keyword-only parameter with a type and a line in the docstring, while an old or misspelt name
still gets the error that says what to write."""

from __future__ import annotations

import inspect
import pydoc
import re
import typing

import pytest

import firebox
from firebox.exception import InvalidError
from firebox.sdk.options import OPTIONS

OWN = {"function": {"schedule", "name", "is_generator", "serialized"}, "cls": {"serialized"}}


def documented(method: typing.Any) -> list[str]:
    """The names the docstring's Args: section gives a line to."""
    args = inspect.getdoc(method).split("Args:\n", 1)[1]
    return re.findall(r"^    (\w+): ", args, re.MULTILINE)


@pytest.mark.parametrize("decorator", ["function", "cls"])
def test_each_option_is_a_typed_documented_keyword_parameter(decorator):
    method = getattr(firebox.App, decorator)
    parameters = inspect.signature(method).parameters
    keyword = {n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keyword == OPTIONS | OWN[decorator]
    for name in keyword:
        assert parameters[name].annotation is not inspect.Parameter.empty, name
    hints = typing.get_type_hints(method)  # every annotation names something importable
    assert hints["cpu"] == float | tuple[float, float] | None
    assert hints["timeout"] is float and parameters["timeout"].default == 300
    assert sorted(documented(method)) == sorted(keyword | {"kwargs"})
    assert parameters["kwargs"].kind is inspect.Parameter.VAR_KEYWORD


def test_help_shows_the_options_with_their_types_and_what_they_do():
    text = pydoc.render_doc(firebox.App.function, renderer=pydoc.plaintext)
    assert "cpu: 'float | tuple[float, float] | None' = None" in text
    assert "cpu: cores to reserve, or (request, limit)." in text
    assert "gpu: 'str | Sequence[str] | None' = None" in text


@pytest.mark.parametrize(("options", "message"), [
    ({"keep_warm": 1}, "'keep_warm' was renamed; use min_containers= instead."),
    ({"concurrency_limit": 2}, "'concurrency_limit' was renamed; use max_containers= instead."),
    ({"allow_concurrent_inputs": 4}, "'allow_concurrent_inputs' was removed; decorate the "
                                     "function with @firebox.concurrent(max_inputs=...) instead."),
    ({"mounts": []}, "'mounts' was removed; add local files to the image with "
                     "Image.add_local_dir / add_local_python_source instead."),
    ({"cpus": 2}, "Unexpected options: cpus; did you mean cpu=?"),
    ({"zzz": 1, "aaa": 2}, "Unexpected options: aaa, zzz."),
])
@pytest.mark.parametrize("decorator", ["function", "cls"])
def test_old_and_misspelt_options_still_say_what_to_write(decorator, options, message):
    app = firebox.App("signature")
    with pytest.raises(InvalidError) as raised:
        getattr(app, decorator)(**options)
    assert str(raised.value) == message


def test_options_given_as_keywords_reach_the_spec():
    app = firebox.App("signature-spec")

    @app.function(serialized=True, cpu=(1, 2), memory=512, timeout=30, retries=2,
                  max_containers=3, gpu="H100:2", block_network=True, isolation="gvisor")
    def f(x):
        return x

    @app.cls(serialized=True, cpu=0.5, scaledown_window=10)
    class Model:
        @firebox.method()
        def predict(self, x):
            return x

    spec = f._spec
    assert (spec["cpu"], spec["cpu_limit"], spec["memory"], spec["timeout"]) == (1.0, 2, 512, 30.0)
    assert spec["retries"]["max_retries"] == 2 and spec["max_containers"] == 3
    assert spec["gpu"] == [{"type": "H100", "count": 2}]
    assert spec["block_network"] is True and spec["isolation"] == "gvisor"
    model = app.registered_functions["Model"]._spec
    assert (model["cpu"], model["scaledown_window"], model["timeout"]) == (0.5, 10.0, 300.0)
