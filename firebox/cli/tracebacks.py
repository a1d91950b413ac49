"""The user's part of a traceback: without firebox's frames and click's, nor the standard
library's and other packages' frames that those called (a remote traceback's runtime frames too)."""

from __future__ import annotations

import re
import sysconfig
import traceback
from pathlib import Path

import click

_OURS = (str(Path(__file__).resolve().parents[1]), str(Path(click.__file__).resolve().parent),
         "<frozen")
_LIBRARIES = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"])
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line \d+')
_REMOTE = "Remote traceback:\n"


def users_traceback(exc: BaseException) -> str | None:
    """exc's traceback as Python prints it, trimmed to the user's frames; None when none of its
    frames is the user's (a fault of firebox's own, whose whole traceback is wanted)."""
    shown = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    kept = _users_frames(shown.stack)
    if not any(not f.filename.startswith(_LIBRARIES) for f in kept):
        return None
    shown.stack = traceback.StackSummary.from_list(kept)
    shown.__notes__ = [_trim_remote(note) for note in getattr(exc, "__notes__", None) or ()]
    return "".join(shown.format())


def _users_frames(stack: traceback.StackSummary) -> list[traceback.FrameSummary]:
    kept, called_by_us = [], True
    for frame in stack:
        if frame.filename.startswith(_OURS):
            called_by_us = True
        elif not frame.filename.startswith(_LIBRARIES):
            kept.append(frame)
            called_by_us = False
        elif not called_by_us:
            kept.append(frame)  # a library the user's code called
    return kept


def _trim_remote(note: str) -> str:
    """A remote traceback's text without the runtime's frames and what they called."""
    if not note.startswith(_REMOTE):
        return note
    out: list[str] = []
    keep, called_by_us = True, True
    for line in note.splitlines():
        frame = _FRAME.match(line)
        if frame:
            path = frame["file"]
            if "/firebox/" in path:
                called_by_us, keep = True, False
            elif "/lib/python3" in path and "-packages/" not in path:
                keep = not called_by_us
            else:
                called_by_us, keep = False, True
        elif not line.startswith("    "):
            keep = True
        if keep:
            out.append(line)
    return "\n".join(out)
