"""What a user sees when an option of @app.function, @app.cls or a lookup is wrong: the option
they wrote, what is wrong with it and what to write instead, before anything reaches a server."""

from __future__ import annotations

import pytest

import firebox
from firebox.exception import InvalidError


def decorate(**options: object) -> None:
    app = firebox.App("options")

    def f(x):
        return x

    app.function(serialized=True, **options)(f)


@pytest.mark.parametrize(("options", "message"), [
    ({"gpu": "H1OO"}, "gpu='H1OO': unknown GPU type 'H1OO'; use one of T4, L4, A10, A10G, A100, "
                      "A100-40GB, A100-80GB, L40S, H100, H200, B200, V100 or \"any\"."),
    ({"retries": -1}, "retries=-1 is out of range; give between 0 and 10 retries."),
    ({"memory": (256, 128)}, "memory=(256, 128): the limit (128) is below the request (256); "
                             "write (request, limit) with limit >= request."),
    ({"cpu": (2, 1)}, "cpu=(2, 1): the limit (1) is below the request (2); write (request, "
                      "limit) with limit >= request."),
    ({"cpus": 2}, "Unexpected options: cpus; did you mean cpu=?"),
    ({"cpu": "two"}, "cpu='two' is not a positive number of cores; write cpu=2, or "
                     "cpu=(request, limit)."),
    ({"memory": "512MB"}, "memory='512MB' is not a positive number of MiB; write memory=512, or "
                          "memory=(request, limit)."),
])
def test_a_wrong_option_names_what_the_user_wrote_and_what_to_write(options, message):
    with pytest.raises(InvalidError) as raised:
        decorate(**options)
    assert str(raised.value) == message


def test_the_same_checks_hold_in_with_options_and_cls():
    app = firebox.App("options-cls")
    with pytest.raises(InvalidError, match="unknown GPU type 'H1OO'"):
        app.cls(gpu="H1OO")(type("Model", (), {}))

    @app.function(serialized=True)
    def f(x):
        return x

    with pytest.raises(InvalidError, match=r"memory='512MB' is not a positive number of MiB"):
        f.with_options(memory="512MB")


def test_good_options_still_pass():
    decorate(gpu=["h100:2", "A100-80GB", "any"], retries=0, memory=(256, 512), cpu=(0.5, 2),
             timeout=30)
