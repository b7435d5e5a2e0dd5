#!/usr/bin/env bash
# Runs Sepal's benchmarks against Python Flower 1.20.0 on this machine (docs/benchmarks.md):
#
#   scripts/bench.sh [e2e|dispatch|fleet-load|large-model|sandbox|noisy ...] [--smoke] [--doc FILE]
#
# No scenario: all of them. Results are printed and replace the scenario's section of
# docs/benchmarks.md (with --smoke: printed only, unless --doc is given). Installs what it
# needs first: the wasm32-wasip2 target, the pinned Flower venv (scripts/python-env.sh), and a
# release build of `sepal` and `sepal-bench`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "+ rustup target add wasm32-wasip2" >&2
rustup target add wasm32-wasip2 >&2

echo "+ scripts/python-env.sh" >&2
scripts/python-env.sh >&2

echo "+ cargo build --release -p sepal-cli -p sepal-bench" >&2
cargo build --release -p sepal-cli -p sepal-bench >&2

# The harness starts target/release/sepal (next to itself), not an override.
unset SEPAL_BIN
exec target/release/sepal-bench "$@"
