#!/usr/bin/env bash
# Jaeger v2 (the trace backend of `make observe`: OTLP receiver, memory storage, query API),
# built once per machine from its Go module at a pinned version into a cache folder; prints
# the path of the binary. JAEGER_HOME overrides the folder.
#
# github.com/jaegertracing/jaeger v1.76.0 is Jaeger v2.13.0. `go install …@v1.76.0` is
# refused (the module's go.mod has replace directives), so it is built inside the
# downloaded module as its own main module, with that module's own go.sum.
set -euo pipefail

MODULE=github.com/jaegertracing/jaeger
VERSION=v1.76.0
RELEASE=v2.13.0
HOME_DIR=${JAEGER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/gateway/jaeger-$RELEASE}
BINARY=$HOME_DIR/jaeger

if [ ! -x "$BINARY" ]; then
  command -v go >/dev/null || { echo "build-jaeger: go is not installed" >&2; exit 1; }
  mkdir -p "$HOME_DIR"
  echo "build-jaeger: building Jaeger $RELEASE into $HOME_DIR (once per machine)" >&2
  started=$SECONDS
  dir=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" \
    | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -f "$dir/cmd/jaeger/main.go" ] || { echo "build-jaeger: go mod download failed" >&2; exit 1; }
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" nice -n 10 go build \
    -trimpath -ldflags "-X $MODULE/internal/version.latestVersion=$RELEASE" \
    -o "$BINARY.part" ./cmd/jaeger) >&2
  mv "$BINARY.part" "$BINARY"
  echo "build-jaeger: built in $((SECONDS - started)) s" >&2
fi
echo "$BINARY"
