"""JSON-RPC gateway: policy, upstream pool, finality-aware cache, rate limits, WebSocket.

Import from the modules (``gateway.rpc.routes``, ``gateway.rpc.pool`` …).
"""
