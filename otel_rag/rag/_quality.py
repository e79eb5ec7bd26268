"""Answer quality: scores recorded the OTel GenAI way, and a built-in groundedness check.

`record_quality()` turns each score into a `gen_ai.evaluation.result` event on the evaluated span (when it is still
open) and always into an OTel event (a log record named `gen_ai.evaluation.result`, with the evaluation's
attributes) on the evaluated trace (so the store has it even when the span has ended), and
feeds the metrics `rag.quality.score` (by evaluation name), `rag.answers` and `rag.hallucinations`, from which
Prometheus computes a hallucination rate and a quality trend.

`groundedness(answer, contexts)` is the share of the answer's sentences supported by the retrieved context: a
sentence is supported when most of its content words appear in one context passage. It is a cheap lexical check
that catches answers drifting off their sources, not a substitute for an LLM judge.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN_ID, NonRecordingSpan, SpanContext, TraceFlags

from otel_rag._telemetry import metrics
from otel_rag._telemetry.logs import EVENT_NAME

__all__ = ["Groundedness", "groundedness", "record_quality"]

_log = logging.getLogger("otel_rag.quality")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[\w']+", re.UNICODE)
_STOPWORDS = frozenset(
    _WORD.findall(
        """a an the and or but of to in on at for with by from as is are was were be been being it its this that
        these those there their they them he she his her we our you your i me my not no yes do does did has have
        had can could will would should may might must so than then also into about over under more most such only"""
    )
)


@dataclass(frozen=True)
class Groundedness:
    score: float  # supported sentences / sentences, 0..1 (1.0 for an empty answer)
    sentences: int
    supported: int
    unsupported: tuple[str, ...]


def _content_words(text: str) -> set[str]:
    return {word for word in (w.lower() for w in _WORD.findall(text)) if word not in _STOPWORDS and len(word) > 1}


def groundedness(answer: str, contexts: Sequence[str], threshold: float = 0.6) -> Groundedness:
    """Share of answer sentences whose content words are mostly (>= threshold) found in one context passage.

    A cheap, local hallucination signal (no model call): record its `score` with `record_quality`.

    Args:
        answer: the generated answer.
        contexts: the passages the answer was generated from.
        threshold: the share of a sentence's content words one passage must hold for the sentence to count as
            supported.

    Returns:
        The score (1.0 when the answer has no content sentence), the counts, and the unsupported sentences.
    """
    sentences = [s.strip() for s in _SENTENCE.split(answer) if _content_words(s)]
    passages = [_content_words(passage) for passage in contexts]
    unsupported = []
    for sentence in sentences:
        words = _content_words(sentence)
        best = max((len(words & passage) / len(words) for passage in passages), default=0.0)
        if best < threshold:
            unsupported.append(sentence)
    supported = len(sentences) - len(unsupported)
    score = supported / len(sentences) if sentences else 1.0
    return Groundedness(round(score, 4), len(sentences), supported, tuple(unsupported))


def _label(name: str, value: float, hallucinated: bool | None) -> str:
    if name == "hallucination":
        return "hallucinated" if hallucinated else "grounded"
    return "pass" if value >= 0.5 else "fail"


def record_quality(
    *,
    trace_id: str | None = None,
    span_id: str | None = None,
    hallucinated: bool | None = None,
    explanation: str | None = None,
    **scores: float | None,
) -> None:
    """Record quality scores (0..1) of one answer, e.g. faithfulness=0.9, answer_relevancy=0.8, groundedness=0.75.

    Without ids, the current span is the evaluated one. With `trace_id` and `span_id` (32 and 16 hex: the evaluated
    span, e.g. the answer's) the scores land on that span's trace, even after it has ended (a feedback endpoint, an
    offline judge); with `trace_id` alone, on the trace without a span. `explanation` (why the judge decided so)
    becomes `gen_ai.evaluation.explanation`.
    """
    current = trace.get_current_span()
    current_context = current.get_span_context()
    if trace_id is not None:
        target = SpanContext(
            trace_id=int(trace_id, 16),
            span_id=int(span_id, 16) if span_id else INVALID_SPAN_ID,  # never a span that is not in that trace
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    else:
        target = current_context
    on_current = current.is_recording() and current_context.trace_id == target.trace_id
    evaluations: dict[str, float] = {name: float(value) for name, value in scores.items() if value is not None}
    if hallucinated is not None:
        evaluations["hallucination"] = 1.0 if hallucinated else 0.0
        metrics.rag_answers.add(1)
        metrics.rag_hallucinations.add(1 if hallucinated else 0)  # at 0 too: the rate's numerator exists from the start
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(target))) if not on_current else None
    try:
        for name, value in evaluations.items():
            attributes: dict[str, str | float] = {
                "gen_ai.evaluation.name": name,
                "gen_ai.evaluation.score.value": value,
                "gen_ai.evaluation.score.label": _label(name, value, hallucinated),
            }
            if explanation:
                attributes["gen_ai.evaluation.explanation"] = explanation
            if name != "hallucination":
                metrics.rag_quality_score.record(value, {"gen_ai.evaluation.name": name})
            if on_current:
                current.add_event("gen_ai.evaluation.result", attributes)
            _log.info("gen_ai.evaluation.result", extra={**attributes, EVENT_NAME: "gen_ai.evaluation.result"})
    finally:
        if token is not None:
            otel_context.detach(token)
