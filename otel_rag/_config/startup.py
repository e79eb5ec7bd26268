"""Fail closed under the launcher: any error while building telemetry stops the process with one line.

`opentelemetry-instrument` swallows exceptions raised by a distro or configurator and runs the app anyway, with no
export, no JSON logs and no redaction. A service that cannot be observed as configured must not start, so our
launcher hooks run inside `exit_on_failure()`: one line on stderr that names the variable (never a secret), then
exit status 2. Programmatic `configure()` raises instead (ConfigError or StartupError), which stops the app's import.

This module imports nothing heavy: it is loaded before the environment has been validated.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from otel_rag._config.settings import ConfigError, StartupError, hide_passwords

__all__ = ["describe_failure", "exit_on_failure"]

EXIT_STATUS = 2


def describe_failure(error: BaseException) -> str:
    """One line saying what failed; secrets in the error's text are masked."""
    if isinstance(error, ConfigError):
        return f"configuration error: {error}"
    if isinstance(error, StartupError):
        return f"cannot start telemetry: {error}"
    text = " ".join(str(error).split()) or type(error).__name__
    return f"cannot start telemetry: {type(error).__name__}: {scrub_message(text)}"


def scrub_message(text: str) -> str:
    """Mask secrets in an error message (URL and key=value passwords, tokens, keys) and keep it one line."""
    from otel_rag._telemetry.redaction import Redactor

    return Redactor().scrub_text(hide_passwords(" ".join(text.split())))[:500]


@contextlib.contextmanager
def exit_on_failure() -> Iterator[None]:
    """Run a launcher hook; on any exception print one line and end the process with status 2."""
    try:
        yield
    except Exception as error:
        sys.stderr.write(f"otel-rag: {describe_failure(error)}\n")
        sys.stderr.flush()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        # os._exit: the hook runs inside sitecustomize and the launcher's own try blocks; only this is certain.
        os._exit(EXIT_STATUS)
