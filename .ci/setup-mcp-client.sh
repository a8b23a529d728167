#!/usr/bin/env bash
# Create the venv holding the official MCP Python client used by the end-to-end tests.
#
# The client (`mcp<2`, whose 1.24–1.30 releases carry the 2025-11-25 tasks API as
# `session.experimental`) pulls in many dependencies (starlette, pydantic, httpx, ...), so it
# never goes into the main environment: it lives in a venv of its own. Idempotent: does nothing
# when the venv already imports a suitable `mcp`. tests/e2e looks in the same directory.
#
#   TASKSTORE_MCP_CLIENT_VENV   venv directory (default: $HOME/.cache/taskstore/mcp-client-venv)
#   PYTHON                      interpreter to build the venv with (default: python3)
#
# Prints the venv's python on success.
set -euo pipefail

DEST="${TASKSTORE_MCP_CLIENT_VENV:-$HOME/.cache/taskstore/mcp-client-venv}"
PY="${PYTHON:-python3}"
SPEC='mcp>=1.24,<2'

check() {
    "$DEST/bin/python" - <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
major, minor = (int(part) for part in version("mcp").split(".")[:2])
from mcp.client.session import ClientSession  # noqa: F401
from mcp.client.streamable_http import streamablehttp_client  # noqa: F401
sys.exit(0 if (major, minor) >= (1, 24) and major < 2 else 1)
PY
}

if [[ -x "$DEST/bin/python" ]] && check; then
    echo "$DEST/bin/python"
    exit 0
fi

rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
"$PY" -m venv "$DEST"
"$DEST/bin/python" -m pip install --quiet --disable-pip-version-check "$SPEC" >&2
check || { echo "the venv at $DEST has no usable mcp client" >&2; exit 1; }
echo "$DEST/bin/python"
