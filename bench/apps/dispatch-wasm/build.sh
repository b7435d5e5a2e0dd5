#!/usr/bin/env bash
# Builds the dispatch benchmark's two Wasm components (bench/guests: dispatch-client,
# dispatch-server) and assembles the app directory that `sepal run` submits:
# pyproject.toml, client.wasm and server.wasm in OUT_DIR (default: target/app here).
#
#   ./build.sh [OUT_DIR] [cargo build args...]
#
# The components build in bench/guests' workspace into <repo>/target/bench-guests (unless
# CARGO_TARGET_DIR is set), shared with the sandbox benchmark's guest, so the guest SDK is
# compiled once. Needs the wasm32-wasip2 target (rustup target add wasm32-wasip2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out_dir="${1:-$here/target/app}"
shift || true
target_dir="${CARGO_TARGET_DIR:-$repo/target/bench-guests}"
# Cargo reads bench/guests/.cargo/config.toml (simd128) because it runs from there.
(cd "$repo/bench/guests" && CARGO_TARGET_DIR="$target_dir" \
    cargo build --release --target wasm32-wasip2 -p dispatch-client -p dispatch-server "$@")
built="$target_dir/wasm32-wasip2/release"
mkdir -p "$out_dir"
cp "$here/pyproject.toml" "$out_dir/pyproject.toml"
cp "$built/dispatch_client.wasm" "$out_dir/client.wasm"
cp "$built/dispatch_server.wasm" "$out_dir/server.wasm"
ls -l "$out_dir"
