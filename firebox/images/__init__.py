"""Images: layered, content-addressed environments built without Docker."""
