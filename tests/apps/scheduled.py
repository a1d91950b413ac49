"""Functions on a Period schedule; each run notes its call id in a Dict."""

import firebox

app = firebox.App("test-scheduled")
runs = firebox.Dict.from_name("test-scheduled-runs", create_if_missing=True)


@app.function(schedule=firebox.Period(seconds=1), scaledown_window=2)
def tick():
    runs[firebox.current_function_call_id()] = "tick"


@app.function(schedule=firebox.Cron("0 9 * * 1-5", timezone="Europe/Berlin"))
def weekday_morning():
    runs[firebox.current_function_call_id()] = "morning"
