#!/usr/bin/env bash
# Build Jaeger v2 (all-in-one: OTLP in, query API and UI out) from Go modules into .build/jaeger-<version>/jaeger.
# `go install` refuses the module (replace directives), so it is added as a tool of a small module of our own.
# Prints the binary's path on stdout (progress goes to stderr).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="${JAEGER_VERSION:-v1.76.0}"
out="$root/.build/jaeger-$version"
if [ -x "$out/jaeger" ]; then echo "$out/jaeger"; exit 0; fi
command -v go >/dev/null || { echo "Go is needed to build Jaeger (https://go.dev/dl)" >&2; exit 1; }
work="$out.partial"
rm -rf "$work" && mkdir -p "$work"
echo "building Jaeger $version into $out (a few minutes the first time)" >&2
(
  cd "$work"
  go mod init otel-rag.local/jaeger-tool >&2 2>&1
  go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$version" >&2
  go build -o jaeger github.com/jaegertracing/jaeger/cmd/jaeger >&2
)
rm -rf "$out" && mv "$work" "$out"
echo "$out/jaeger"
