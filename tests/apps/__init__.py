"""Apps the tests run; containers import them from the uploaded code like any user's app."""
