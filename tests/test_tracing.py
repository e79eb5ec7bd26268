"""trace_span as context manager and decorator, sync and async; context into tasks, threads and executors."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.trace import StatusCode

from otel_rag import current_trace_id, set_user, trace_span
from otel_rag._telemetry.tracing import propagate_context_to_threads
from otel_rag.testing import CapturedTelemetry


@pytest.fixture(autouse=True)
def _threads_carry_context() -> None:
    propagate_context_to_threads(True)


def test_context_manager_nests_and_times(sdk: CapturedTelemetry) -> None:
    with trace_span("outer", **{"rag.top_k": 5, "obj": {"a": 1}}) as outer, trace_span("inner"):
        assert current_trace_id() == format(outer.get_span_context().trace_id, "032x")
    inner, outer_span = sdk.finished()
    assert inner.parent.span_id == outer_span.context.span_id
    assert outer_span.attributes["rag.top_k"] == 5
    assert outer_span.attributes["obj"] == "{'a': 1}"  # not an OTel type: stored as text
    assert outer_span.end_time >= inner.end_time > inner.start_time >= outer_span.start_time


def test_exception_marks_error_records_and_reraises(sdk: CapturedTelemetry) -> None:
    with pytest.raises(ValueError, match="bad chunk"), trace_span("chunk"):
        raise ValueError("bad chunk")
    (span,) = sdk.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "ValueError"
    assert [event.name for event in span.events] == ["exception"]
    assert span.events[0].attributes["exception.message"] == "bad chunk"


def test_decorators_sync_and_async(sdk: CapturedTelemetry) -> None:
    @trace_span("sync.work", stage="parse")
    def parse(x: int) -> int:
        return x * 2

    @trace_span()
    async def embed(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @trace_span("async.fail")
    async def fail() -> None:
        raise RuntimeError("boom")

    assert parse(2) == 4
    assert asyncio.run(embed(1)) == 2
    with pytest.raises(RuntimeError):
        asyncio.run(fail())
    names = [span.name for span in sdk.finished()]
    assert names == ["sync.work", "test_decorators_sync_and_async.<locals>.embed", "async.fail"]
    assert sdk.finished()[2].status.status_code is StatusCode.ERROR
    assert parse.__name__ == "parse"  # functools.wraps


def test_cancellation_is_not_an_error(sdk: CapturedTelemetry) -> None:
    async def main() -> None:
        async def slow() -> None:
            with trace_span("slow"):
                await asyncio.sleep(10)

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (span,) = sdk.finished()
    assert span.status.status_code is not StatusCode.ERROR


def _trace_in_thread() -> tuple[str | None, str]:
    return current_trace_id(), threading.current_thread().name


def test_context_flows_into_tasks_threads_and_executors(sdk: CapturedTelemetry) -> None:
    async def main() -> dict[str, str | None]:
        loop = asyncio.get_running_loop()
        with trace_span("request"):
            set_user("u-7")
            expected = current_trace_id()

            async def in_task() -> str | None:
                return current_trace_id()

            seen = {
                "create_task": await asyncio.create_task(in_task()),
                "to_thread": (await asyncio.to_thread(_trace_in_thread))[0],
                "run_in_executor": (await loop.run_in_executor(None, _trace_in_thread))[0],
            }
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                seen["thread_pool"] = pool.submit(_trace_in_thread).result()[0]
                seen["pool_map"] = next(iter(pool.map(lambda _: current_trace_id(), [1])))
                pool.submit(trace_span("in.pool")(lambda: None)).result()
            seen["expected"] = expected
            return seen

    seen = asyncio.run(main())
    expected = seen.pop("expected")
    assert expected is not None
    assert seen == dict.fromkeys(seen, expected)
    in_pool = next(span for span in sdk.finished() if span.name == "in.pool")
    request = next(span for span in sdk.finished() if span.name == "request")
    assert in_pool.parent.span_id == request.context.span_id
    assert in_pool.attributes["enduser.id"] == "u-7"


def test_without_propagation_threads_start_empty(sdk: CapturedTelemetry) -> None:
    propagate_context_to_threads(False)
    with trace_span("request"), concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(current_trace_id).result() is None


def test_trace_span_without_name_as_context_manager_is_an_error() -> None:
    with pytest.raises(TypeError, match="needs a name"), trace_span():
        pass


def test_set_user_in_a_task_outside_a_request_does_not_change_the_parent(sdk: CapturedTelemetry) -> None:
    from otel_rag._telemetry.tracing import current_user

    async def main() -> tuple[str | None, str | None]:
        set_user("parent")

        async def child() -> str | None:
            set_user("child")
            return current_user()

        seen_in_child = await asyncio.create_task(child())
        return seen_in_child, current_user()

    assert asyncio.run(main()) == ("child", "parent")


def test_one_trace_span_object_used_by_concurrent_tasks_keeps_their_spans_apart(sdk: CapturedTelemetry) -> None:
    import asyncio

    shared = trace_span("shared.block")

    async def task(name: str, delay: float) -> None:
        with otel_trace.get_tracer("t").start_as_current_span(f"parent-{name}"), shared as span:
            span.set_attribute("task", name)
            await asyncio.sleep(delay)  # the other task enters and leaves meanwhile

    async def both() -> None:
        await asyncio.gather(task("a", 0.01), task("b", 0.05))  # a enters first and leaves first

    asyncio.run(both())
    spans = {span.name + span.attributes.get("task", ""): span for span in sdk.finished()}
    for name, delay in (("a", 0.01), ("b", 0.05)):
        block, parent = spans[f"shared.block{name}"], spans[f"parent-{name}"]
        assert block.parent is not None and block.parent.span_id == parent.context.span_id
        # Ended by its own task after its own sleep, not by the other task leaving its block first.
        assert block.end_time - block.start_time >= delay * 0.9e9, name
        assert block.end_time <= parent.end_time
