"""Functions for the memory-bound tests: output floods."""

import firebox

app = firebox.App("test-bounds")


@app.function(scaledown_window=30)
def flood(lines: int, width: int = 100) -> int:
    text = "x" * (width - 1)
    for _ in range(lines):
        print(text)
    return lines
