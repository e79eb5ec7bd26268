"""What a failed connection to the store means, in one line without secrets: the server turned the configured role
away (wrong password, no such role or database: a person must fix it) or the store is not reachable (an outage:
retried). psycopg gives connection failures no SQLSTATE; the server's FATAL message in libpq's text is the sign.
"""

from __future__ import annotations

import psycopg

from otel_rag._config.settings import hide_passwords

__all__ = ["describe", "refused_by_server", "refused_credentials"]

# FATAL messages that pass by waiting: the server is starting, stopping, recovering or full.
_TRANSIENT = ("starting up", "shutting down", "too many connections", "in recovery", "remaining connection")
_CREDENTIALS = ("password authentication failed", "does not exist", "no pg_hba.conf entry", "permission denied")


def describe(error: BaseException) -> str:
    """The error as one line, passwords hidden."""
    return hide_passwords(" ".join(str(error).split())) or type(error).__name__


def refused_by_server(error: psycopg.Error) -> bool:
    """Whether the server itself said no, for a reason that will not pass by retrying."""
    if getattr(error, "sqlstate", None) is not None:
        return True
    text = describe(error)
    return "FATAL:" in text and not any(phrase in text for phrase in _TRANSIENT)


def refused_credentials(error: psycopg.Error) -> bool:
    """Whether the server turned the configured role away at login (password, role, database, pg_hba)."""
    text = describe(error)
    return refused_by_server(error) and any(phrase in text for phrase in _CREDENTIALS)
