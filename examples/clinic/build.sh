#!/usr/bin/env bash
# Builds the clinic example's two Wasm components and puts them where pyproject.toml names
# them: client.wasm and server.wasm next to this script (what `sepal build` bundles).
#
# The crates are members of Sepal's workspace; they build with its `guest` profile
# (opt-level 3, LTO, strip) and, from .cargo/config.toml at the repository root, with
# simd128, into <repo>/target/guests (the same place the tests build every guest, so a
# build made by either serves both). Extra arguments go to cargo build.
# Needs the wasm32-wasip2 target (rustup target add wasm32-wasip2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}/guests"
(cd "$repo" && env -u RUSTFLAGS CARGO_TARGET_DIR="$target_dir" \
    cargo build --profile guest --target wasm32-wasip2 -p clinic-client -p clinic-server "$@")
out="$target_dir/wasm32-wasip2/guest"
cp "$out/clinic_client.wasm" "$here/client.wasm"
cp "$out/clinic_server.wasm" "$here/server.wasm"
ls -l "$here/client.wasm" "$here/server.wasm"
