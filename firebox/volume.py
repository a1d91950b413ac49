"""Volumes and their file entries, as `modal.volume` names them."""

from .sdk.volume import FileEntry, FileEntryType, Volume

__all__ = ["FileEntry", "FileEntryType", "Volume"]
