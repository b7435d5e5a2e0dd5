#!/usr/bin/env bash
# Builds the quickstart's two Wasm components and puts them where pyproject.toml names
# them: client.wasm and server.wasm next to this script (what `sepal build` bundles).
#
# Needs the wasm32-wasip2 target (rustup target add wasm32-wasip2). simd128 comes from
# .cargo/config.toml, which cargo reads because this script runs cargo from here.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --target wasm32-wasip2 -p quickstart-client -p quickstart-server "$@"
target_dir="${CARGO_TARGET_DIR:-target}"
out="$target_dir/wasm32-wasip2/release"
cp "$out/quickstart_client.wasm" client.wasm
cp "$out/quickstart_server.wasm" server.wasm
ls -l client.wasm server.wasm
