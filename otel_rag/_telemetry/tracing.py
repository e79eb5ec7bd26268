"""Spans for application code and the request's user, carried through async tasks and threads.

`trace_span` is one object that works as a context manager and as a decorator (sync or async): the span is
timed, nested under whatever is current, and an exception marks it as an error, is recorded and re-raised.
`set_user` attaches a user id to the current request so that every log line and every span after it carry it.
`propagate_context_to_threads` makes ThreadPoolExecutor (and so `loop.run_in_executor`) run work in a copy of
the caller's context, which the standard library does not do on its own. `without_instrumentation` is for our own
background threads: their I/O (Postgres, LangSmith) must never become spans of the app.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ParamSpec, TypeVar, cast

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

__all__ = [
    "ENDUSER_ID",
    "UserSpanProcessor",
    "attribute_value",
    "current_trace_id",
    "current_user",
    "decorate",
    "mark_error",
    "propagate_context_to_threads",
    "request_user_box",
    "set_user",
    "trace_span",
    "without_instrumentation",
]

P = ParamSpec("P")
R = TypeVar("R")

ENDUSER_ID = "enduser.id"
MAX_USER_ID = 128  # characters kept of a user id, from a header or from code
# A proxy until the SDK is configured, then the real tracer: safe to create at import time.
_tracer = trace.get_tracer("otel_rag")


class _RequestUser:
    """A mutable box shared by everything that runs for one request.

    A sync FastAPI endpoint runs in a worker thread with a *copy* of the request's context; setting a plain
    ContextVar there would not be seen by the middleware or the access log. Mutating a shared box is.
    """

    __slots__ = ("root_span", "user_id")

    def __init__(self, user_id: str | None = None, root_span: Span | None = None) -> None:
        self.user_id = user_id
        self.root_span = root_span


# Set on an exception that escaped a request, so the server's own error log line can name the trace and user.
FAILED_REQUEST_ATTR = "_otel_rag_failed_request"

request_user_box: contextvars.ContextVar[_RequestUser | None] = contextvars.ContextVar(
    "otel_rag_request_user", default=None
)


def begin_request(user_id: str | None, root_span: Span | None = None) -> contextvars.Token[_RequestUser | None]:
    """Called by the HTTP middleware before it starts the server span: a fresh user box for this request."""
    return request_user_box.set(_RequestUser(user_id, root_span))


def set_request_root(span: Span) -> None:
    """The request's server span, once started (set_user also stamps it)."""
    box = request_user_box.get()
    if box is not None:
        box.root_span = span


def end_request(token: contextvars.Token[_RequestUser | None], error: BaseException | None = None) -> None:
    box = request_user_box.get()
    if error is not None and box is not None and box.root_span is not None:
        with contextlib.suppress(AttributeError):  # exceptions with __slots__ cannot carry it
            setattr(error, FAILED_REQUEST_ATTR, (box.root_span.get_span_context(), box))
    request_user_box.reset(token)


def set_user(user_id: str | None) -> None:
    """Attach a user id to the current request (or, outside a request, to the current context).

    Every log line after this carries `user_id`; the request's server span and every span started after
    this carry `enduser.id`. Ids longer than 128 characters are cut.

    Args:
        user_id: the user's id (redacted like any other value if it matches a PII pattern), or None to forget it.
    """
    if user_id is not None:
        user_id = str(user_id)[:MAX_USER_ID]
    box = request_user_box.get()
    if box is None or box.root_span is None:
        # Outside a request: a box of this context's own, so a task or thread never changes its parent's user.
        box = _RequestUser(user_id)
        request_user_box.set(box)
    else:
        box.user_id = user_id  # inside a request: shared by everything serving it, worker threads included
    if user_id is None:
        return
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attribute(ENDUSER_ID, user_id)
    if box.root_span is not None and box.root_span is not current and box.root_span.is_recording():
        box.root_span.set_attribute(ENDUSER_ID, user_id)


def current_user() -> str | None:
    box = request_user_box.get()
    return box.user_id if box is not None else None


def current_trace_id() -> str | None:
    """The current trace id as 32 lowercase hex characters, or None outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class UserSpanProcessor(SpanProcessor):
    """Stamps `enduser.id` on every span started while a user is known."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        box = request_user_box.get()
        if box is not None and box.user_id is not None:
            span.set_attribute(ENDUSER_ID, box.user_id)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def attribute_value(value: Any) -> AttributeValue:
    """A value OTel attributes can hold: scalars and lists of scalars as they are, anything else as text."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
        return cast(AttributeValue, list(value))
    return str(value)


def mark_error(span: Span, error: BaseException) -> str | None:
    """Record an exception on a span as an error; returns its error.type, or None for cancellation and exits."""
    if not isinstance(error, Exception):  # CancelledError, KeyboardInterrupt, SystemExit are not failures
        return None
    error_type = type(error).__qualname__
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {error}"))
    span.set_attribute("error.type", error_type)
    return error_type


def decorate(func: Callable[P, R], new_context: Callable[[], AbstractContextManager[Any]]) -> Callable[P, R]:
    """Run each call of `func` (sync or async) inside a fresh context manager from `new_context`."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with new_context():
                return await func(*args, **kwargs)

        return cast(Callable[P, R], async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with new_context():
            return func(*args, **kwargs)

    return wrapper


class trace_span:  # lower case: used like a function, `with trace_span("x")` / `@trace_span("x")`
    """A span around a block or a function, sync or async.

    >>> with trace_span("rerank", top_k=5) as span:
    ...     span.set_attribute("rag.result_count", 3)

    >>> @trace_span("load_index")
    ... async def load_index(): ...

    Without a name, a decorated function's qualified name is used. Attribute values that OTel cannot hold
    (dicts, objects) are stored as their string form.
    """

    def __init__(self, name: str | None = None, /, **attributes: Any) -> None:
        self._name = name
        self._attributes = {key: attribute_value(value) for key, value in attributes.items()}

    @contextmanager
    def _span(self, name: str) -> Iterator[Span]:
        with _tracer.start_as_current_span(
            name, attributes=self._attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield span
            except BaseException as exc:
                mark_error(span, exc)
                raise

    def __enter__(self) -> Span:
        if self._name is None:
            raise TypeError("trace_span needs a name when used as a context manager")
        manager = self._span(self._name)
        span = manager.__enter__()
        push_in_context(self, manager)
        return span

    def __exit__(self, *exc_info: Any) -> bool | None:
        manager = pop_in_context(self)
        return cast(bool | None, manager.__exit__(*exc_info)) if manager is not None else None

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        name = self._name or func.__qualname__
        return decorate(func, lambda: self._span(name))


# -- per-use state of reusable context managers -------------------------------------------------------------

# (owner, state) pairs of the `with` blocks open in this context. One `trace_span(...)` or RAG stage object may be
# entered by several tasks or threads at once; each keeps its own state here, never on the shared object.
_open_blocks: contextvars.ContextVar[tuple[tuple[object, Any], ...]] = contextvars.ContextVar(
    "otel_rag_open_blocks", default=()
)


def push_in_context(owner: object, state: Any) -> None:
    _open_blocks.set((*_open_blocks.get(), (owner, state)))


def pop_in_context(owner: object) -> Any:
    """The state `owner` pushed last in this context (removed), or None."""
    blocks = _open_blocks.get()
    for index in range(len(blocks) - 1, -1, -1):
        if blocks[index][0] is owner:
            _open_blocks.set(blocks[:index] + blocks[index + 1 :])
            return blocks[index][1]
    return None


def peek_in_context(owner: object) -> Any:
    """The state `owner` pushed last in this context, or None."""
    for block_owner, state in reversed(_open_blocks.get()):
        if block_owner is owner:
            return state
    return None


# -- our own threads ------------------------------------------------------------------------------------------


def without_instrumentation(target: Callable[..., R]) -> Callable[..., R]:
    """Wrap a thread's target so that everything it does runs with instrumentation suppressed: the calls our
    background threads make (psycopg, requests, httpx, urllib3) never become spans or metrics of the app."""

    # Imported when a thread is set up, on the caller's thread: not when this module is imported (the module
    # imports opentelemetry.propagate, which reads OTEL_PROPAGATORS before that variable has been validated), and
    # not on the new thread (an import there can meet a module lock that a fork left held: a hung worker).
    from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation

    @functools.wraps(target)
    def run(*args: Any, **kwargs: Any) -> R:
        with suppress_instrumentation(), suppress_http_instrumentation():
            return target(*args, **kwargs)

    return run


# -- context into thread pools ------------------------------------------------------------------------------

_original_submit = concurrent.futures.ThreadPoolExecutor.submit


def _submit_in_context(
    self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., R], /, *args: Any, **kwargs: Any
) -> concurrent.futures.Future[R]:
    context = contextvars.copy_context()
    return _original_submit(self, context.run, fn, *args, **kwargs)


def propagate_context_to_threads(enabled: bool = True) -> None:
    """Run ThreadPoolExecutor work (and `loop.run_in_executor`) in a copy of the submitting context."""
    target = _submit_in_context if enabled else _original_submit
    concurrent.futures.ThreadPoolExecutor.submit = target  # type: ignore[method-assign,assignment]
