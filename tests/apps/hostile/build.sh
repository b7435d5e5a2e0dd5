#!/usr/bin/env bash
# Builds the hostile app's two Wasm components and assembles the app directory that
# `sepal run` submits: pyproject.toml, client.wasm and server.wasm in OUT_DIR
# (default: target/app, so nothing built lands in the source tree).
#
#   ./build.sh [OUT_DIR] [cargo build args...]
#
# Needs the wasm32-wasip2 target (rustup target add wasm32-wasip2).
set -euo pipefail
cd "$(dirname "$0")"
out_dir="${1:-target/app}"
shift || true
cargo build --release --target wasm32-wasip2 -p hostile-client -p hostile-server "$@"
target_dir="${CARGO_TARGET_DIR:-target}"
built="$target_dir/wasm32-wasip2/release"
mkdir -p "$out_dir"
cp pyproject.toml "$out_dir/pyproject.toml"
cp "$built/hostile_client.wasm" "$out_dir/client.wasm"
cp "$built/hostile_server.wasm" "$out_dir/server.wasm"
ls -l "$out_dir"
