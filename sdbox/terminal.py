"""Showing untrusted text on a terminal: every character that is not printable is escaped.

A bundle is anyone's file. Its label names, ``normalization_source``, report and fidelity keys,
and even its file names reach ``sdbox inspect``'s output and sdbox's error messages. Printed
raw, ``"\\x1b]52;c;…\\x07"`` writes the reader's clipboard (OSC 52), other escape sequences
retitle the window, hide text or move the cursor over what was printed, and a right-to-left
override (U+202E) makes a name read backwards. So every line sdbox prints goes through
:func:`escaped`, which keeps printable text as it is and writes everything else as a Python
escape (``\\x1b``, ``\\u202e``), on one line.
"""

from __future__ import annotations


def escaped(value: object) -> str:
    """``str(value)`` with each non-printable character (controls, newlines, format and
    bidirectional marks, unassigned code points) written as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``."""
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in str(value))


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
