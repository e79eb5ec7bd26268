#!/usr/bin/env bash
# Build versitygw (an S3-compatible server, Apache-2.0; the retention tests' real S3) from Go modules into
# .build/versitygw-<version>/versitygw. Prints the binary's path on stdout (progress goes to stderr).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="${VERSITYGW_VERSION:-v1.7.0}"
out="$root/.build/versitygw-$version"
if [ -x "$out/versitygw" ]; then echo "$out/versitygw"; exit 0; fi
command -v go >/dev/null || { echo "Go is needed to build versitygw (https://go.dev/dl)" >&2; exit 1; }
work="$out.partial"
rm -rf "$work" && mkdir -p "$work"
echo "building versitygw $version into $out (a few minutes the first time)" >&2
GOBIN="$work" go install "github.com/versity/versitygw/cmd/versitygw@$version" >&2
rm -rf "$out" && mv "$work" "$out"
echo "$out/versitygw"
