"""An app written for Modal's client, with only `import modal` changed."""

import asyncio

import firebox as modal
from firebox.exception import InvalidError

app = modal.App("test-modal-style")


@app.function(timeout=60, retries=modal.Retries(max_retries=1, initial_delay=0.0))
def greet(name: str) -> str:
    return f"hello {name}"


@app.function()
@modal.concurrent(max_inputs=4)
async def slow_square(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * x


@app.function()
def words(n: int):
    for i in range(n):
        yield f"w{i}"


@app.cls(scaledown_window=10)
class Embedder:
    dim: int = modal.parameter(default=3)

    @modal.enter()
    def load(self):
        self.weights = [1] * self.dim

    @modal.method()
    def embed(self, text: str) -> list[int]:
        return [len(text) * w for w in self.weights]

    @modal.exit()
    def unload(self):
        print("unloading")


@app.local_entrypoint()
def main(n: int = 3, shout: bool = False):
    greeting = greet.remote("modal")
    squares = list(slow_square.map(range(n)))
    vectors = Embedder(dim=2).embed.remote("abc")
    call = slow_square.spawn(n)
    streamed = list(words.remote_gen(2))
    try:
        greet.with_options(keep_warm=1)
    except InvalidError:
        renamed = "rejected"
    print(
        "result:", greeting.upper() if shout else greeting, sum(squares), vectors,
        modal.FunctionCall.from_id(call.object_id).get(), streamed, renamed, modal.is_local(),
    )
