# The reference RAG service (examples/rag_app) with otel-rag, for docker-compose.yml. The same image runs the
# local OpenAI-compatible LLM (examples/rag_app/llm_server.py) and `otel-rag migrate`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY otel_rag ./otel_rag
COPY migrations ./migrations
COPY examples ./examples
RUN pip install --no-cache-dir '.[examples,langsmith]'
ENV OTEL_PYTHON_DISTRO=otel_rag
EXPOSE 8000
CMD ["opentelemetry-instrument", "uvicorn", "examples.rag_app.main:app", "--host", "0.0.0.0", "--port", "8000"]
