"""The reference RAG service, instrumented only through otel-rag.

    python -m examples.rag_app.llm_server --port 8001 &
    OPENAI_BASE_URL=http://127.0.0.1:8001/v1 opentelemetry-instrument uvicorn examples.rag_app.main:app

`POST /documents` (multipart `file`: .txt, .md or .pdf) parses, chunks, embeds and indexes a document;
`POST /query` ({"question", "top_k"}) retrieves with BM25, reranks by embedding similarity, asks the LLM with the
best passages as context, checks the answer's groundedness and returns it with sources, token usage and cost;
`POST /feedback` ({"trace_id", "span_id", "rating": 1..5}) attaches a user's rating to an earlier answer's trace. Every
response carries `trace_id` (and the `X-Trace-Id` header). The LLM is any OpenAI-compatible endpoint
(`OPENAI_BASE_URL`, models `RAG_CHAT_MODEL` and `RAG_EMBEDDING_MODEL`); chunks are `RAG_CHUNK_WORDS` words (60) with
`RAG_CHUNK_OVERLAP` (10) in common, recorded as `rag.chunk.size`/`rag.chunk.overlap` on uploads and questions. The
deployment's version is the standard `OTEL_RESOURCE_ATTRIBUTES=service.version=...`. `GET /` is a tiny upload page
(built from ui/upload.html) showing the returned trace id with a link to the debug page, which the service mounts at
`/debug/`.
"""

from __future__ import annotations

import io
import math
import os
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, File, HTTPException, Response, UploadFile
from openai import AsyncOpenAI
from pydantic import BaseModel, Field
from rank_bm25 import BM25Okapi

import otel_rag
import otel_rag.web
from otel_rag import rag

CHAT_MODEL = os.environ.get("RAG_CHAT_MODEL", "gpt-4o-mini")
EMBEDDING_MODEL = os.environ.get("RAG_EMBEDDING_MODEL", "text-embedding-3-small")
PROVIDER = os.environ.get("RAG_PROVIDER", "openai")


def _chunking() -> tuple[int, int]:
    """Words per chunk and overlap (`RAG_CHUNK_WORDS`, `RAG_CHUNK_OVERLAP`): the setting `otel-rag compare` weighs."""
    try:
        words = int(os.environ.get("RAG_CHUNK_WORDS", "60"))
        overlap = int(os.environ.get("RAG_CHUNK_OVERLAP", "10"))
    except ValueError as error:
        raise SystemExit(f"RAG_CHUNK_WORDS and RAG_CHUNK_OVERLAP must be whole numbers: {error}") from None
    if not 0 <= overlap < words:
        raise SystemExit(f"RAG_CHUNK_OVERLAP ({overlap}) must be at least 0 and less than RAG_CHUNK_WORDS ({words})")
    return words, overlap


CHUNK_WORDS, CHUNK_OVERLAP = _chunking()
_WORD = re.compile(r"[\w']+")

app = FastAPI(title="rag-app")
# The debug page at /debug/ (token: OTEL_RAG_DEBUG_TOKEN; store: OTEL_RAG_DEBUG_DSN, a reader role).
app.include_router(otel_rag.web.router)
log = otel_rag.get_logger("rag_app")
_client: AsyncOpenAI | None = None


def client() -> AsyncOpenAI:
    global _client
    if _client is None:
        _client = AsyncOpenAI(api_key=os.environ.get("OPENAI_API_KEY", "local-demo-key"), max_retries=0)
    return _client


def _server() -> dict[str, Any]:
    """The model server's address, as the GenAI conventions record it on each call."""
    url = client().base_url
    return {"server_address": url.host, "server_port": url.port or (443 if url.scheme == "https" else 80)}


@dataclass
class Chunk:
    document_id: str
    index: int
    text: str
    vector: list[float]


class Index:
    """All uploaded chunks, searchable with BM25. Each chunk is tokenised once, when added; the BM25 model is
    rebuilt at the first search after uploads, so an upload costs its own chunks, not the whole corpus."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self._words: list[list[str]] = []
        self._bm25: BM25Okapi | None = None
        self._lock = threading.Lock()

    def add(self, chunks: list[Chunk]) -> None:
        words = [_tokens(chunk.text) for chunk in chunks]
        with self._lock:
            self.chunks.extend(chunks)
            self._words.extend(words)
            self._bm25 = None

    def search(self, question: str, top_k: int) -> list[tuple[Chunk, float]]:
        with self._lock:
            if not self.chunks:
                return []
            if self._bm25 is None:
                self._bm25 = BM25Okapi(self._words)
            words = set(_tokens(question))
            scores = self._bm25.get_scores(list(words))
            # BM25's idf goes negative in tiny corpora, so "relevant" means sharing a word, ranked by score.
            matching = [
                (chunk, float(score))
                for chunk, score, chunk_words in zip(self.chunks, scores, self._words, strict=True)
                if not words.isdisjoint(chunk_words)
            ]
        return sorted(matching, key=lambda pair: pair[1], reverse=True)[:top_k]


INDEX = Index()


def _tokens(text: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(text)]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _parse(filename: str, data: bytes) -> tuple[str, int]:
    """(text, pages) of an uploaded file."""
    if filename.lower().endswith(".pdf"):
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data))
        return "\n".join(page.extract_text() or "" for page in reader.pages), len(reader.pages)
    if filename.lower().endswith((".txt", ".md", ".markdown")):
        return data.decode("utf-8", "replace"), 1
    raise HTTPException(status_code=415, detail="upload a .txt, .md or .pdf file")


def _chunk(text: str) -> list[str]:
    words = text.split()
    step = CHUNK_WORDS - CHUNK_OVERLAP
    return [" ".join(words[i : i + CHUNK_WORDS]) for i in range(0, max(len(words) - CHUNK_OVERLAP, 1), step)]


async def _embed(texts: list[str]) -> list[list[float]]:
    with rag.embed(model=EMBEDDING_MODEL, provider=PROVIDER, input_count=len(texts), **_server()) as stage:
        response = await client().embeddings.create(model=EMBEDDING_MODEL, input=texts)
        stage.usage(input_tokens=response.usage.prompt_tokens)
        stage.set(response_model=response.model, dimensions=len(response.data[0].embedding) if response.data else None)
        return [item.embedding for item in response.data]


@app.post("/documents")
async def upload_document(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI's idiom
    data = await file.read()
    document_id = f"doc-{uuid.uuid4().hex[:12]}"
    filename = file.filename or "upload"
    with rag.upload(document_id=document_id, filename=filename, size=len(data), mime_type=file.content_type):
        with rag.parse(document_id=document_id) as stage:
            text, pages = _parse(filename, data)
            stage.set(pages=pages, characters=len(text))
        if not text.strip():
            raise HTTPException(status_code=422, detail="no text found in the document")
        with rag.chunk(chunk_size=CHUNK_WORDS, chunk_overlap=CHUNK_OVERLAP) as stage:
            pieces = _chunk(text)
            stage.set(chunk_count=len(pieces))
            for index, piece in enumerate(pieces):
                log.debug("chunk.created", document_id=document_id, chunk_index=index, words=len(piece.split()))
        vectors = await _embed(pieces)
        with rag.Stage("index", index="memory-bm25", document_id=document_id) as stage:
            INDEX.add(
                [
                    Chunk(document_id, i, piece, vector)
                    for i, (piece, vector) in enumerate(zip(pieces, vectors, strict=True))
                ]
            )
            stage.set(total_chunks=len(INDEX.chunks))
    return {"document_id": document_id, "chunks": len(pieces), "pages": pages, "trace_id": otel_rag.current_trace_id()}


class Query(BaseModel):
    question: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=4, ge=1, le=20)


@app.post("/query")
async def query(body: Query) -> dict[str, Any]:
    # the chunking the index was built with, so answers can be compared by it (otel-rag compare --by rag.chunk.size)
    chunking = {"chunk_size": CHUNK_WORDS, "chunk_overlap": CHUNK_OVERLAP}
    with rag.retrieve(index="memory-bm25", top_k=body.top_k * 2, **chunking) as stage:
        hits = INDEX.search(body.question, body.top_k * 2)
        stage.results(len(hits), best_score=hits[0][1] if hits else None)
    if not hits:
        return {"answer": "No documents match that question.", "sources": [], "trace_id": otel_rag.current_trace_id()}
    with rag.rerank(reranker="embedding-cosine", top_k=body.top_k) as stage:
        (question_vector,) = await _embed([body.question])
        reranked = sorted(hits, key=lambda hit: _cosine(hit[0].vector, question_vector), reverse=True)[: body.top_k]
        stage.results(len(reranked), best_score=_cosine(reranked[0][0].vector, question_vector))
    context = "\n\n".join(chunk.text for chunk, _ in reranked)
    prompt = f"Answer only from the context.\n\nContext:\n{context}\n\nQuestion: {body.question}"
    with rag.generate(model=CHAT_MODEL, provider=PROVIDER, temperature=0, **_server()) as stage:
        stage.content("prompt", prompt)
        completion = await client().chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], temperature=0
        )
        stage.set(
            response_model=completion.model,
            response_id=completion.id,
            finish_reasons=[choice.finish_reason for choice in completion.choices],
        )
        answer = completion.choices[0].message.content or ""
        usage = completion.usage
        stage.usage(usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None)
        stage.content("completion", answer)
        check = otel_rag.groundedness(answer, [chunk.text for chunk, _ in reranked])
        otel_rag.record_quality(
            groundedness=check.score,
            hallucinated=check.score < 0.5,
            explanation=f"{check.supported} of {check.sentences} sentences supported by the retrieved context",
        )
        answer_span = stage.span.get_span_context().span_id if stage.span is not None else 0
    return {
        "answer": answer,
        "sources": [{"document_id": c.document_id, "chunk": c.index, "score": round(s, 4)} for c, s in reranked],
        "groundedness": check.score,
        "usage": {"input_tokens": stage.input_tokens, "output_tokens": stage.output_tokens},
        "cost_usd": stage.cost,
        "trace_id": otel_rag.current_trace_id(),
        "span_id": format(answer_span, "016x"),  # the evaluated answer: feedback is recorded on it
    }


class Feedback(BaseModel):
    trace_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    span_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


@app.post("/feedback")
async def feedback(body: Feedback) -> dict[str, Any]:
    otel_rag.record_quality(
        trace_id=body.trace_id,
        span_id=body.span_id,
        user_feedback=(body.rating - 1) / 4,
        explanation=f"rated {body.rating} of 5 by the user",
    )
    log.info("feedback.received", rated_trace_id=body.trace_id, rating=body.rating, has_comment=bool(body.comment))
    return {"recorded": True, "trace_id": otel_rag.current_trace_id()}


@app.get("/", include_in_schema=False)
def upload_page() -> Response:
    """A tiny upload page (ui/upload.html) that shows the returned trace id with a link to the debug page."""
    return otel_rag.web.upload_page("/debug/")


@app.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"ok": True, "chunks": len(INDEX.chunks)}
