#!/usr/bin/env bash
# Create the venv holding FastMCP's client, the MCP 2026-07-28 ("modern") client used by the
# end-to-end tests (tests/e2e/test_modern_client.py).
#
# FastMCP 4.1.4 probes `server/discover` and speaks the stateless 2026-07-28 wire (per-request
# `_meta`, routing headers, SEP-2322 input rounds) on the official SDK `mcp==2.3.0`; its
# companion `fastmcp-tasks` carries the tasks extension (SEP-2663) client. They pull in many
# dependencies and an `mcp` major the legacy client venv (.ci/setup-mcp-client.sh, `mcp<2`)
# cannot share, so they live in a venv of their own. All three are pinned in one install
# command, `mcp` included, so the resolver cannot pick another SDK. Idempotent: does nothing
# when the venv already imports exactly these versions. tests/e2e looks in the same directory.
#
#   TASKSTORE_MODERN_CLIENT_VENV   venv directory (default: $HOME/.cache/taskstore/modern-client-venv)
#   PYTHON                         interpreter to build the venv with (default: python3)
#
# Prints the venv's python on success.
set -euo pipefail

DEST="${TASKSTORE_MODERN_CLIENT_VENV:-$HOME/.cache/taskstore/modern-client-venv}"
PY="${PYTHON:-python3}"
SPECS=("fastmcp==4.1.4" "fastmcp-tasks==4.1.4" "mcp==2.3.0")

check() {
    "$DEST/bin/python" - <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
pins = {"fastmcp": "4.1.4", "fastmcp-tasks": "4.1.4", "mcp": "2.3.0"}
if any(version(name) != wanted for name, wanted in pins.items()):
    sys.exit(1)
# What tests/e2e/modern_client_scenarios.py (and the tasks scenarios to come) import.
import httpx2  # noqa: F401
from fastmcp import Client  # noqa: F401
from fastmcp.client.transports import StreamableHttpTransport  # noqa: F401
from fastmcp_tasks import call_tool_task  # noqa: F401
from mcp import MCPError  # noqa: F401
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
sys.exit(0 if "2026-07-28" in MODERN_PROTOCOL_VERSIONS else 1)
PY
}

if [[ -x "$DEST/bin/python" ]] && check; then
    echo "$DEST/bin/python"
    exit 0
fi

rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
"$PY" -m venv "$DEST"
"$DEST/bin/python" -m pip install --quiet --disable-pip-version-check "${SPECS[@]}" >&2
check || { echo "the venv at $DEST has no usable FastMCP client (${SPECS[*]})" >&2; exit 1; }
echo "$DEST/bin/python"
