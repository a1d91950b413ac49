"""FunctionCall.get_call_graph: a call's inputs, the calls their code made (remote, spawn, map,
a class's method) and theirs, with each input's function, status and container."""

from __future__ import annotations

import time

import pytest
from apps import call_graph
from other_workspace import other_workspace_env, run_python

import firebox
from firebox.call_graph import InputInfo, InputStatus


@pytest.fixture(scope="module", autouse=True)
def running(server):
    with call_graph.app.run(show_logs=False):
        yield


def test_a_spawned_call_graph_holds_the_calls_its_code_made(server):
    call = call_graph.root.spawn()
    doubled, mapped, incremented, root_input = call.get(timeout=60)
    assert doubled == [4, 6] and incremented == 1
    assert mapped == ["1", "two is not allowed", "3"]

    [root] = call.get_call_graph()
    assert isinstance(root, InputInfo)
    assert (root.input_id, root.function_call_id) == (root_input, call.object_id)
    assert root.function_name == "root" and root.module_name == "apps.call_graph"
    assert root.status == InputStatus.SUCCESS and root.task_id
    by_name: dict[str, list[InputInfo]] = {}
    for child in root.children:
        by_name.setdefault(child.function_name, []).append(child)
    assert sorted(by_name) == ["Broken.go", "Counter.incr", "double", "fragile"]
    doubles, fragiles = by_name["double"], by_name["fragile"]
    assert len(doubles) == 2 and len({d.function_call_id for d in doubles}) == 2
    assert [[leaf.function_name for leaf in d.children] for d in doubles] == [["leaf"], ["leaf"]]
    assert all(leaf.status == InputStatus.SUCCESS and not leaf.children
               for d in doubles for leaf in d.children)
    # The map is one call of three inputs, the second of which raised.
    assert len({f.function_call_id for f in fragiles}) == 1
    assert [f.status for f in fragiles] == [InputStatus.SUCCESS, InputStatus.FAILURE,
                                            InputStatus.SUCCESS]
    assert by_name["Counter.incr"][0].status == InputStatus.SUCCESS
    # Its container never got ready (@enter raised): the input failed in no container.
    [broken] = by_name["Broken.go"]
    assert (broken.status, broken.task_id) == (InputStatus.INIT_FAILURE, "")

    # Another workspace is not told the call exists.
    theirs = run_python(other_workspace_env(server), f"""
import firebox
try:
    firebox.FunctionCall.from_id({call.object_id!r}).get_call_graph()
except firebox.exception.NotFoundError as exc:
    print("refused:", exc)
""")
    refused = f"refused: No function call '{call.object_id}' in this workspace."
    assert theirs.stdout.strip() == refused


def test_a_running_call_graph_shows_its_pending_inputs_and_their_containers(tmp_path):
    release = tmp_path / "release"
    call = call_graph.waiting_root.spawn(str(release))
    deadline = time.monotonic() + 30
    while True:  # until the child runs in its container (a remote call not yet stored)
        [root] = call.get_call_graph()
        if root.children and root.children[0].task_id:
            break
        assert time.monotonic() < deadline, f"the child call never showed running: {root}"
    [child] = root.children
    assert root.status == child.status == InputStatus.PENDING
    assert root.task_id and child.task_id != root.task_id
    assert child.function_name == "wait_for_file"
    release.touch()
    assert call.get(timeout=30) == "released"
    [root] = call.get_call_graph()
    assert [root.status, root.children[0].status] == [InputStatus.SUCCESS, InputStatus.SUCCESS]
    assert root.children[0].input_id == child.input_id


def test_the_call_graph_module_has_modals_names():
    assert InputStatus.PENDING == 0 and InputStatus(99) is InputStatus.PENDING
    assert {s.name for s in InputStatus} == {"PENDING", "SUCCESS", "FAILURE", "INIT_FAILURE",
                                             "TERMINATED", "TIMEOUT"}
    with pytest.raises(firebox.exception.NotFoundError):
        firebox.FunctionCall.from_id("fc-nosuchcall").get_call_graph()
