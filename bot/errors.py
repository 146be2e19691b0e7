"""The last line of defence for an HTTP request: an error nobody expected answers 500 with an
error id (never a stack trace to the client), and the log gets one line per occurrence — the
traceback only the first time that error (type and place) is seen in a window, so a flood of
the same bad request cannot flood the log.
"""

from __future__ import annotations

import logging
import secrets
import time
import traceback

from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("fieldbot.errors")

# errors of the request itself, not of the code: a 400 with a short reason
BAD_INPUT = (ValueError, KeyError, TypeError, UnicodeError, HttpProcessingError,
             RecursionError, OverflowError)

WINDOW_S = 300.0
_seen: dict[tuple[str, str], float] = {}


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    last = tb[-1] if tb else None
    return f"{last.filename}:{last.lineno}" if last else "?"


def unexpected(exc: BaseException, path: str) -> str:
    """Log an unexpected error once per (type, place) per window, in full the first time;
    returns the error id to show the user."""
    error_id = secrets.token_hex(4)
    key = (exc.__class__.__name__, _where(exc))
    now = time.monotonic()
    first = now - _seen.get(key, -WINDOW_S) >= WINDOW_S
    if first:
        if len(_seen) > 1000:
            _seen.clear()
        _seen[key] = now
        log.error("unexpected %s on %s [error %s]", key[0], path, error_id, exc_info=exc)
    else:
        log.error("unexpected %s on %s [error %s] (repeat; traceback logged earlier)",
                  key[0], path, error_id)
    return error_id
