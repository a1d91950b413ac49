"""The runtime that runs inside every container."""
