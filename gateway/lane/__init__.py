"""The lane: requests answered inside the connection protocol, before aiohttp makes a
request object, a task and a response for them.

Only what a feature registers (a cached JSON-RPC read, a signed record) and only plain
requests take it;
everything else, and anything the lane is not sure of, is served by aiohttp as before.
See ``bench/rpc_http.py`` for what it saves.
"""

from gateway.lane.answers import Answer, LaneReply, LaneRequest, error_reply, register
from gateway.lane.protocol import GatewayRunner

__all__ = ["Answer", "GatewayRunner", "LaneReply", "LaneRequest", "error_reply", "register"]
