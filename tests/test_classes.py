"""Cls semantics: parameters, lifecycle hooks, concurrency and batching on classes."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from apps import classes

import firebox
from firebox.exception import InvalidError


@pytest.fixture(scope="module", autouse=True)
def running(server):
    with classes.app.run(show_logs=False):
        yield


def test_parameters_and_defaults():
    assert classes.Params().values.remote() == (7, "hi", b"\x00", False)
    assert classes.Params(n=3, s="yo", b=b"\xff\x01", flag=True).values.remote() == (
        3, "yo", b"\xff\x01", True
    )
    assert classes.Params(s="only").values.remote() == (7, "only", b"\x00", False)
    assert classes.Required(name="ann").hello.remote() == "hello ann"


def test_parameter_errors():
    with pytest.raises(InvalidError, match="must be int"):
        classes.Params(n="3")
    with pytest.raises(InvalidError, match="must be int"):
        classes.Params(n=True)
    with pytest.raises(InvalidError, match="must be bytes"):
        classes.Params(b="text")
    with pytest.raises(InvalidError, match="no parameter nope"):
        classes.Params(nope=1)
    with pytest.raises(InvalidError, match="keyword"):
        classes.Params(3)
    with pytest.raises(InvalidError, match="name"):
        classes.Required()


def test_custom_init_and_bad_parameter_types_are_rejected():
    other = firebox.App("test-classes-rejected")

    class WithInit:
        def __init__(self, k):
            self.k = k

        @firebox.method()
        def f(self):
            return self.k

    with pytest.raises(InvalidError, match="firebox.parameter"):
        other.cls()(WithInit)

    class FloatParam:
        x: float = firebox.parameter(default=1.0)

        @firebox.method()
        def f(self):
            return self.x

    with pytest.raises(InvalidError, match="int, str, bytes or bool"):
        other.cls()(FloatParam)


def test_method_needs_an_instance():
    with pytest.raises(InvalidError, match=r"Params\(\)\.values\.remote"):
        classes.Params.values.remote()
    with pytest.raises(InvalidError, match="instance"):
        classes.Params.values.spawn()


def test_enter_hooks_run_snap_first():
    order, local = classes.Lifecycle().seen.remote()
    assert order == ["snap", "enter"]
    assert local is False


def test_local_method_runs_enter_hooks_first():
    order, local = classes.Lifecycle().seen.local()
    assert order == ["snap", "enter"]
    assert local is True
    assert classes.Params(n=2).scaled.local(5) == 10


def test_parameter_values_get_their_own_containers():
    one = classes.Params(n=1).container.remote()
    two = classes.Params(n=2).container.remote()
    assert one != two
    assert classes.Params(n=1).container.remote() == one
    # Spelling out a default is the same parameter set as leaving it out.
    assert classes.Params(n=7).container.remote() == classes.Params().container.remote()


def test_every_function_verb_works_on_methods():
    obj = classes.Params(n=3)
    assert list(obj.scaled.map([1, 2, 3])) == [3, 6, 9]
    assert list(obj.scaled.map([1, 2], kwargs={"factor": 10})) == [30, 60]
    assert list(obj.scaled.starmap([(1, 2), (2, 2)])) == [6, 12]
    assert obj.scaled.spawn(4).get(timeout=60) == 12
    assert list(obj.count.remote_gen(3)) == [0, 1, 2]
    assert obj.async_values.remote() == (3, "hi")
    assert obj.scaled.for_each([1, 2]) is None


def test_method_aio_forms():
    async def main():
        obj = classes.Params(n=5)
        out = [await obj.scaled.remote.aio(2)]
        out.append([v async for v in obj.scaled.map.aio([1, 2])])
        out.append([v async for v in obj.count.remote_gen.aio(2)])
        out.append(await (await obj.scaled.spawn.aio(3)).get.aio())
        return out

    assert asyncio.run(main()) == [10, [5, 10], [0, 1], 15]


def test_concurrent_class_overlaps_inputs_in_one_container():
    key = uuid.uuid4().hex
    results = list(classes.Together().meet.map([key] * 3, [3] * 3))
    assert len({c for c, _ in results}) == 1
    assert len({t for _, t in results}) == 3


def test_cls_with_options_and_with_concurrency():
    plain = classes.Params(n=4).container.remote()
    sized = classes.Params.with_options(cpu=0.25)(n=4)
    assert sized.container.remote() != plain
    assert sized.values.remote()[0] == 4
    key = uuid.uuid4().hex
    wide = classes.Together.with_concurrency(max_inputs=2)()
    results = list(wide.meet.map([key] * 2, [2] * 2))
    assert len({c for c, _ in results}) == 1


def test_batched_method():
    results = list(classes.Doubler().double.map(range(8)))
    assert [v for v, _ in results] == [2 * x for x in range(8)]
    assert 1 < max(n for _, n in results) <= 4
    smaller = classes.Doubler.with_batching(max_batch_size=2, wait_ms=300)()
    assert max(n for _, n in smaller.double.map(range(4))) == 2


def test_methods_and_hooks_are_inherited_from_a_base_class():
    loud = classes.LoudGreeter()
    assert loud.greet.remote("ada") == "HELLO ada!"  # the base's method and @enter hook
    assert loud.kind.remote() == "subclass"  # its own override wins
    assert loud.hooks_run.remote() == ["loud"]  # an overridden hook runs once, its own
