"""The control plane's HTTP face: routes, request shapes, auth and limits; no domain logic."""
