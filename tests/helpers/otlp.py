"""A real OTLP/HTTP trace receiver for tests: it decodes what exporters send (protobuf)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def spans_of_export(body: bytes) -> list[tuple[str | None, Span]]:
    """(service.name, span) for every span of one OTLP/HTTP protobuf export."""
    export = ExportTraceServiceRequest()
    export.ParseFromString(body)
    found = []
    for resource in export.resource_spans:
        attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
        for scope in resource.scope_spans:
            found.extend((attributes.get("service.name"), span) for span in scope.spans)
    return found


@dataclass
class Receiver:
    port: int
    spans: list[tuple[str | None, Span]] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """A receiver in a thread (for tests whose own thread blocks, e.g. on a browser)."""
    lock = threading.Lock()
    found: list[tuple[str | None, Span]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/v1/traces":
                with lock:
                    found.extend(spans_of_export(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(server.server_address[1], found)
    finally:
        server.shutdown()
        server.server_close()
