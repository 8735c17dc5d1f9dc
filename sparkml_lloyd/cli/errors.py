"""The command line's failures: its two exception types, and any exception as one line
(without Java or Python stack traces)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CliError", "UsageError", "describe_error", "first_line"]


class CliError(Exception):
    """A failure to report as one line, exit status 1."""


class UsageError(CliError):
    """A wrong argument, reported as one line, exit status 2."""


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)):\s*(.+)$")


def first_line(text: str) -> str:
    """The informative line of an error message: the last ``XError: ...`` line of an
    embedded Python traceback, else the first non-empty line; without a SQLSTATE suffix."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[0]
    if "Traceback (most recent call last)" in str(text):
        found = [m for m in map(_EXCEPTION_LINE.match, lines) if m]
        if found:
            name, msg = found[-1].groups()
            line = f"{name.rsplit('.', 1)[-1]}: {msg}"
    return re.sub(r"\s*SQLSTATE: \w+\.?\s*$", "", line)


def _java_root_message(java_exc: Any) -> str:
    """The message of the innermost cause of a Java throwable (one line)."""
    seen = 0
    root = java_exc
    while seen < 20:
        cause = root.getCause()
        if cause is None:
            break
        root, seen = cause, seen + 1
    msg = root.getMessage()
    return first_line(msg if msg else root.toString())


def describe_error(exc: BaseException) -> str:
    """One line for any exception, without Java or Python stack traces."""
    from py4j.protocol import Py4JError, Py4JJavaError
    from pyspark.errors import PySparkException

    if isinstance(exc, Py4JJavaError):
        try:
            return _java_root_message(exc.java_exception)
        except Exception:
            return first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, Py4JError):
        return "lost the connection to Spark's JVM (it may have run out of memory or exited)"
    if isinstance(exc, PySparkException):
        text = exc.getMessage() if hasattr(exc, "getMessage") else str(exc)
        return first_line(text or str(exc)) or type(exc).__name__
    return first_line(str(exc)) or type(exc).__name__
