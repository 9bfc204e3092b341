#!/usr/bin/env bash
# Shopify's toxiproxy (the chaos test's fault injector), built once per machine from its Go
# module at a pinned version (`@latest` resolves to the old v2.5.0) into a cache folder.
# Prints the path of toxiproxy-server. TOXIPROXY_HOME overrides the folder.
set -euo pipefail

VERSION=v2.12.0
HOME_DIR=${TOXIPROXY_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/gateway/toxiproxy-$VERSION}
SERVER=$HOME_DIR/toxiproxy-server

if [ ! -x "$SERVER" ]; then
  command -v go >/dev/null || { echo "build-toxiproxy: go is not installed" >&2; exit 1; }
  mkdir -p "$HOME_DIR"
  echo "build-toxiproxy: building toxiproxy $VERSION into $HOME_DIR (once per machine)" >&2
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  GOBIN=$build GOFLAGS=-mod=mod nice -n 10 go install "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION" >&2
  mv "$build/server" "$SERVER"
fi
echo "$SERVER"
