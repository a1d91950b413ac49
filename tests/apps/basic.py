"""Plain functions, a class, generators and failures."""

import os
import time

import firebox

app = firebox.App("test-basic")


class CustomError(Exception):
    pass


@app.function()
def square(x):
    return x * x


@app.function()
def add(a, b=0):
    return a + b


@app.function()
def fail(message):
    raise CustomError(message)


@app.function()
def where():
    return {
        "is_local": firebox.is_local(),
        "input_id": firebox.current_input_id(),
        "call_id": firebox.current_function_call_id(),
        "pid": os.getpid(),
    }


@app.function()
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


@app.function()
def countdown(n):
    for i in range(n, 0, -1):
        yield i


@app.function()
async def async_double(x):
    return 2 * x


@app.cls()
class Counter:
    start: int = firebox.parameter(default=0)

    @firebox.enter()
    def setup(self):
        self.base = self.start + 100

    @firebox.method()
    def add(self, x):
        return self.base + x
