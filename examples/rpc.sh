#!/bin/sh
# JSON-RPC through the gateway with curl: one call, a batch, and how the answer was made
# (the X-Gateway-* headers). GATEWAY_URL: another gateway than make dev's.
set -eu
GATEWAY=${GATEWAY_URL:-http://127.0.0.1:8080}

curl -s "$GATEWAY/rpc" -H 'Content-Type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}'
echo
curl -s "$GATEWAY/rpc" -H 'Content-Type: application/json' \
  -d '[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},
       {"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","latest"]}]'
echo
curl -s -o /dev/null -D - "$GATEWAY/rpc" -H 'Content-Type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}' | grep -i '^x-gateway-\|^server-timing'
