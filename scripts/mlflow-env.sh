#!/usr/bin/env bash
# Create (or reuse) the Python environment with the pinned MLflow tracking server that the
# MLflow tests start (tests/src/mlflow.rs). Kept apart from .venv (Flower's): MLflow and
# Flower pin different versions of shared packages.
#
#   scripts/mlflow-env.sh            # venv at <repo>/.venv-mlflow
#   SEPAL_MLFLOW_VENV=/some/dir scripts/mlflow-env.sh
#
# Idempotent: does nothing when <venv>/bin/mlflow --version already reports the pinned
# version. Needs python3 with venv and pip; talks only to PyPI. 3.17.2 is pinned because
# it installs here (3.18.0 does not resolve on this Python).
set -euo pipefail

MLFLOW_VERSION="3.17.2"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEPAL_MLFLOW_VENV:-$REPO_ROOT/.venv-mlflow}"
PYTHON="${PYTHON:-python3}"

mlflow_ok() {
    [ -x "$VENV/bin/mlflow" ] && "$VENV/bin/mlflow" --version 2>/dev/null | grep -q "version $MLFLOW_VERSION\$"
}

if mlflow_ok; then
    echo "mlflow-env: mlflow $MLFLOW_VERSION already in $VENV"
    exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "mlflow-env: $PYTHON not found" >&2; exit 1; }

# A half-made venv (no working pip) from an earlier failed attempt is replaced.
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
    echo "mlflow-env: creating $VENV with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "mlflow==$MLFLOW_VERSION"

if ! mlflow_ok; then
    echo "mlflow-env: $VENV/bin/mlflow --version does not report $MLFLOW_VERSION:" >&2
    "$VENV/bin/mlflow" --version >&2 || true
    exit 1
fi
echo "mlflow-env: mlflow $MLFLOW_VERSION ready in $VENV"
