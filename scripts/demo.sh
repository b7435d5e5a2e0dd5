#!/usr/bin/env bash
# Sepal's main job: a local federation (one SuperLink, two SuperNodes, all in one
# process) running the Wasm quickstart, federated logistic regression written in Rust.
#
# Fresh machine requirements: the Rust toolchain (rustup) and network access to
# crates.io. No Python is needed. Extra arguments go to `sepal demo`
# (e.g. --nodes 4 --run-config "num-server-rounds=5"). SEPAL_BIN=<path> uses an existing
# sepal binary instead of building one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if command -v rustup >/dev/null 2>&1; then
    rustup target add wasm32-wasip2 >/dev/null \
        || echo "demo.sh: warning: 'rustup target add wasm32-wasip2' failed (offline?); continuing" >&2
fi
echo "Building the quickstart's Wasm components..."
examples/quickstart/build.sh
sepal="${SEPAL_BIN:-}"
if [ -z "$sepal" ]; then
    echo "Building sepal..."
    cargo build -p sepal-cli
    sepal=target/debug/sepal
fi
exec "$sepal" demo examples/quickstart "$@"
