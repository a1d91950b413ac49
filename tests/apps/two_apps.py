"""For tests/test_cli_run.py: a file with two Apps, so `firebox run` must be told which."""

import firebox

first = firebox.App("first")
second = firebox.App("second")


@first.function()
def one():
    return 1


@second.function()
def two():
    return 2


@first.local_entrypoint()
def hello():
    print("hello from first")


@second.local_entrypoint()
def greet(who: str = "you"):
    print(f"greetings, {who}")
