#!/usr/bin/env bash
# Build our Collector distribution with the official builder (ocb) from Go modules.
# Output: .build/collector-<sha of the manifest>/otelcol-rag/otelcol-rag (the builder writes the generated sources
# and the binary into the manifest's output_path); reused while the manifest and builder version are unchanged.
# Prints the binary's path on stdout (progress goes to stderr).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
manifest="$root/collector/builder-config.yaml"
builder_version="v0.165.0"
key="$( (cat "$manifest"; echo "$builder_version") | sha256sum | cut -c1-16)"
out="$root/.build/collector-$key"
binary="$out/otelcol-rag/otelcol-rag"
if [ -f "$binary" ] && [ -x "$binary" ]; then echo "$binary"; exit 0; fi
command -v go >/dev/null || { echo "Go is needed to build the Collector (https://go.dev/dl)" >&2; exit 1; }
tools="$root/.build/tools"
if [ ! -x "$tools/builder-$builder_version" ]; then
  echo "installing the Collector builder $builder_version" >&2
  GOBIN="$tools" go install "go.opentelemetry.io/collector/cmd/builder@$builder_version" >&2
  mv "$tools/builder" "$tools/builder-$builder_version"
fi
work="$out.partial"
rm -rf "$work" && mkdir -p "$work"
cp "$manifest" "$work/builder-config.yaml"
echo "building the Collector into $out (a few minutes the first time)" >&2
(cd "$work" && "$tools/builder-$builder_version" --config builder-config.yaml >&2)
rm -rf "$out" && mv "$work" "$out"
echo "$binary"
