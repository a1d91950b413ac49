"""A deployed function on a short Period, for the missed-runs policy across a server restart."""

import firebox

app = firebox.App("test-scheduled-deployed")


@app.function(schedule=firebox.Period(seconds=2), scaledown_window=2)
def every_two_seconds():
    return "ran"
