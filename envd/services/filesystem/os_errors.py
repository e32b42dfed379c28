"""OS errors rendered the way upstream (Go) prints them, since its error messages embed them.

Go's *PathError reads `<op> <path>: <errno text>` with the errno text in lower case
(`lstat /x: no such file or directory`); *LinkError reads `<op> <old> <new>: <errno text>`.
"""

from __future__ import annotations


def errno_text(err: OSError) -> str:
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]


def path_error(op: str, path: str, err: OSError) -> str:
    return f"{op} {path}: {errno_text(err)}"


def link_error(op: str, old: str, new: str, err: OSError) -> str:
    return f"{op} {old} {new}: {errno_text(err)}"
