"""The control plane's domain: calls, scheduling, containers, objects, logs and metering."""
