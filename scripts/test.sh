#!/usr/bin/env bash
# The project's one test command (CI runs exactly this via .ci/run).
#
# Fresh machine requirements: the Rust toolchain (rustup), python3 (3.11) with pip, and
# network access to crates.io and PyPI. Installs the pinned Python Flower into .venv
# (scripts/python-env.sh), builds every binary (the interop tests start `sepal`), runs the
# README's main command (scripts/demo.sh), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "+ rustup target add wasm32-wasip2"
if command -v rustup >/dev/null 2>&1; then
    rustup target add wasm32-wasip2 \
        || echo "test.sh: warning: 'rustup target add wasm32-wasip2' failed (offline?); continuing" >&2
else
    echo "test.sh: warning: rustup not found; not adding wasm32-wasip2" >&2
fi

echo "+ scripts/python-env.sh"
scripts/python-env.sh

echo "+ cargo build --workspace --bins"
cargo build --workspace --bins

# The README's main command, on this fresh checkout (it builds the Wasm quickstart).
echo "+ scripts/demo.sh"
scripts/demo.sh

echo "+ cargo test --workspace --no-fail-fast"
cargo test --workspace --no-fail-fast
