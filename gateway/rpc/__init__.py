"""JSON-RPC gateway: policy, upstream pool, finality-aware cache, rate limits, WebSocket.

Import from the modules (``gateway.rpc.routes``, ``gateway.rpc.pool`` …); this package
imports nothing, so that ``gateway.config`` can read ``gateway.rpc.policy`` defaults.
"""
