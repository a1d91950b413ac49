"""A class whose containers load state once in @enter and serve many calls.

    firebox run examples/class_with_enter.py
"""

import time

import firebox

app = firebox.App("class-with-enter")


@app.cls(scaledown_window=30)
class Embedder:
    dim: int = firebox.parameter(default=8)

    @firebox.enter()
    def load(self):
        # Stands in for loading model weights: done once per container, not once per call.
        self.loaded_at = time.time()
        self.table = {chr(c): [(c * (j + 1)) % 97 / 97 for j in range(self.dim)] for c in range(128)}

    @firebox.method()
    def embed(self, text: str) -> list[float]:
        vectors = [self.table.get(ch, [0.0] * self.dim) for ch in text]
        return [sum(col) / max(len(vectors), 1) for col in zip(*vectors)] if vectors else []

    @firebox.exit()
    def unload(self):
        print("container shutting down after serving")


@app.local_entrypoint()
def main():
    small, large = Embedder(), Embedder(dim=4)
    print([round(x, 3) for x in small.embed.remote("hello")])
    print(len(large.embed.remote("firebox")), "dimensions from a second parameter set")
    print(len(list(small.embed.map(["a", "bb", "ccc"]))), "embeddings from one warm container")
