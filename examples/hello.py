"""Hello world: a function, a class with an @enter hook, and a local entrypoint.

    firebox run examples/hello.py --n 100
"""

import firebox

app = firebox.App("hello")


@app.function(cpu=1, memory=512, timeout=60, retries=2)
def square(x):
    return x * x


@app.cls()
class Model:
    k: int = firebox.parameter(default=3)

    @firebox.enter()
    def load(self):
        self.factor = self.k

    @firebox.method()
    def predict(self, x):
        return self.factor * x


@app.local_entrypoint()
def main(n: int = 10):
    print(square.remote(4), sum(square.map(range(n))), Model().predict.remote(2))
