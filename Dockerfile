# The reference RAG service (examples/rag_app) with otel-rag and its debug page, for docker-compose.yml. The same
# image runs the local OpenAI-compatible LLM (examples/rag_app/llm_server.py), `otel-rag migrate` and `otel-rag serve`.

# The debug page (ui/) is built into otel_rag/web/static/ first.
FROM node:20-slim AS ui
WORKDIR /src/ui
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY ui/ ./
RUN npm run build

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py MANIFEST.in README.md LICENSE ./
COPY otel_rag ./otel_rag
COPY --from=ui /src/otel_rag/web/static ./otel_rag/web/static
COPY migrations ./migrations
COPY examples ./examples
RUN pip install --no-cache-dir '.[archive,examples,langsmith,web]'
ENV OTEL_PYTHON_DISTRO=otel_rag
EXPOSE 8000
CMD ["opentelemetry-instrument", "uvicorn", "examples.rag_app.main:app", "--host", "0.0.0.0", "--port", "8000"]
