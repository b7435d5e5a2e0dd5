#!/usr/bin/env bash
# The project's one test command (CI runs exactly this via .ci/run).
#
# Fresh machine requirements: the Rust toolchain (rustup), python3 (3.11) with pip, and
# network access to crates.io, PyPI, npm and Debian (apt-get, for ssh-keygen, Node.js,
# PostgreSQL or HAProxy if missing). Installs the pinned Python Flower into .venv
# (scripts/python-env.sh) and the pinned MLflow into .venv-mlflow (scripts/mlflow-env.sh),
# builds the tests and the `sepal` binary, runs the README's main
# command (scripts/demo.sh), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "+ rustup target add wasm32-wasip2"
if command -v rustup >/dev/null 2>&1; then
    rustup target add wasm32-wasip2 \
        || echo "test.sh: warning: 'rustup target add wasm32-wasip2' failed (offline?); continuing" >&2
else
    echo "test.sh: warning: rustup not found; not adding wasm32-wasip2" >&2
fi

# What the tests run besides Rust and Python, from Debian when a machine lacks it:
# ssh-keygen (node keys, as operators make them), Node.js with npm (the test OpenID
# provider), PostgreSQL (state backend and app databases; its server binaries live outside
# PATH) and HAProxy (the load balancer in front of SuperLink replicas).
install() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "+ $sudo apt-get install -y $*"
    $sudo apt-get install -y "$@" || { $sudo apt-get update && $sudo apt-get install -y "$@"; }
}
command -v ssh-keygen >/dev/null 2>&1 || install openssh-client
command -v npm >/dev/null 2>&1 || install nodejs npm
command -v haproxy >/dev/null 2>&1 || install haproxy
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || install postgresql

echo "+ scripts/python-env.sh"
scripts/python-env.sh

# The MLflow tests run a real tracking server (pinned mlflow, in .venv-mlflow).
echo "+ scripts/mlflow-env.sh"
scripts/mlflow-env.sh

# The user-authentication tests run a real OpenID provider (tests/oidc: the pinned
# oidc-provider package on the machine's Node.js).
echo "+ npm ci --prefix tests/oidc"
npm ci --prefix tests/oidc --no-audit --no-fund

# One build serves everything: `cargo test --no-run` also builds the `sepal` binary (the
# interop tests start it), with the same features as the tests, so nothing is built twice.
echo "+ cargo test --workspace --no-run"
cargo test --workspace --no-run

# The README's main command on this checkout, with the binary just built.
echo "+ scripts/demo.sh"
SEPAL_BIN=target/debug/sepal scripts/demo.sh

echo "+ cargo test --workspace --no-fail-fast"
cargo test --workspace --no-fail-fast
