"""Backends start and stop container processes and report how they ended; no platform logic."""
