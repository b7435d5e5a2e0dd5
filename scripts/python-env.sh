#!/usr/bin/env bash
# Create (or reuse) the Python environment with the pinned reference Flower release.
#
#   scripts/python-env.sh            # venv at <repo>/.venv
#   SEPAL_VENV=/some/dir scripts/python-env.sh
#
# Idempotent: does nothing when <venv>/bin/flwr --version already reports the pinned
# version. Needs python3 (3.11) with pip; talks only to PyPI.
set -euo pipefail

FLWR_VERSION="1.20.0"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEPAL_VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

flwr_ok() {
    [ -x "$VENV/bin/flwr" ] && [ -x "$VENV/bin/python" ] \
        && "$VENV/bin/flwr" --version 2>/dev/null | grep -qx "Flower version: $FLWR_VERSION"
}

if flwr_ok; then
    echo "python-env: flwr $FLWR_VERSION already in $VENV"
    exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "python-env: $PYTHON not found" >&2; exit 1; }

make_venv() {
    # A half-made venv (no bin/pip) from an earlier failed attempt is replaced.
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    rm -rf "$VENV"
    local err
    err="$(mktemp)"
    if "$PYTHON" -m venv "$VENV" 2>"$err"; then
        rm -f "$err"
        return 0
    fi
    echo "python-env: '$PYTHON -m venv' failed:" >&2
    cat "$err" >&2 || true
    rm -f "$err"
    rm -rf "$VENV"
    # Debian's python3 ships venv without ensurepip (package python3.X-venv).
    local pyver
    pyver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "python-env: trying apt-get install python${pyver}-venv" >&2
        if (apt-get install -y "python${pyver}-venv" || { apt-get update && apt-get install -y "python${pyver}-venv"; }) >&2 \
            && "$PYTHON" -m venv "$VENV"; then
            return 0
        fi
        rm -rf "$VENV"
    fi
    # Last resort: virtualenv from PyPI (it bundles its own pip), installed with
    # --target so that an "externally managed" system Python does not refuse it.
    echo "python-env: falling back to virtualenv from PyPI" >&2
    local tgt
    tgt="$(mktemp -d)"
    "$PYTHON" -m pip install --quiet --target "$tgt" virtualenv
    PYTHONPATH="$tgt" "$PYTHON" -m virtualenv "$VENV"
    rm -rf "$tgt"
}

echo "python-env: creating $VENV with $("$PYTHON" --version 2>&1)"
make_venv
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "flwr==$FLWR_VERSION"

if ! flwr_ok; then
    echo "python-env: $VENV/bin/flwr --version does not report $FLWR_VERSION:" >&2
    "$VENV/bin/flwr" --version >&2 || true
    exit 1
fi
echo "python-env: flwr $FLWR_VERSION ready in $VENV"
echo "python-env: use it with  export PATH=\"$VENV/bin:\$PATH\""
