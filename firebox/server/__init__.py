"""The control plane: one asyncio process that owns all state and schedules all work."""
