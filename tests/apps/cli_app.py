"""An app run with `firebox run`: a local entrypoint with options and a function that prints."""

import firebox

app = firebox.App("test-cli")


@app.function()
def shout(word):
    print(f"shouting {word}")
    return word.upper()


@app.function()
def triple(x: int):
    return 3 * x


@app.local_entrypoint()
def main(n: int = 3, loud: bool = False):
    """Shout N words."""
    results = list(shout.map([f"w{i}" for i in range(n)]))
    print("results:", ",".join(results), "loud" if loud else "quiet")
