"""structlog set-up: JSON lines on stdout (or console), trace ids and redaction on each line."""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, BinaryIO, ClassVar, Protocol

import orjson
import structlog
from aiohttp import web
from aiohttp.http import HttpProcessingError
from opentelemetry import trace

from gateway.config import LogSettings
from gateway.telemetry.logsink import LogSink, SinkFactory
from gateway.telemetry.state import CURRENT_REQUEST

# Field names whose values are secrets or credentials: never logged. Matched anywhere in
# the name (``access_token``, ``X-Operator-Token``, ``relayer_private_key``), at any depth
# of a logged mapping (a ``headers`` dict), whatever logged the line.
_SECRET_NAME = re.compile(
    r"authorization|cookie|passw|passphrase|secret|token|private[_-]?key|api[_-]?key"
    r"|mnemonic|seed_phrase|credential|signature|^relay\.",
    re.IGNORECASE,
)
REDACTED = "[redacted]"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


@functools.lru_cache(maxsize=1024)
def is_secret_name(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def _scrub(value: object, depth: int = 0) -> object:
    """``value`` with the values of secret-named keys replaced, in nested mappings and lists."""
    if depth > 4:
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED if is_secret_name(str(key)) else _scrub(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item, depth + 1) for item in value]
    return value


def redact_secrets(
    _logger: object, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The one redaction step of every line (structlog's and the standard library's)."""
    for key, value in event_dict.items():
        if is_secret_name(key):
            event_dict[key] = REDACTED
        elif isinstance(value, Mapping | list | tuple):
            event_dict[key] = _scrub(value)
    return event_dict


# Tracebacks name the frames and the exception, never the frames' locals: a local can hold
# a request's headers or body (structlog renders locals by default).
_dict_tracebacks = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def add_trace_context(
    _logger: object, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Put the request id and the trace and span id on the line, unless already bound: the
    current OpenTelemetry span's (a sampled request's child spans, background work), else
    the request's own (an unsampled request makes no span object)."""
    current = CURRENT_REQUEST.get()
    if current is not None and "request_id" not in event_dict:
        event_dict["request_id"] = current.request_id
    if "trace_id" not in event_dict:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event_dict["trace_id"] = format(context.trace_id, "032x")
            event_dict["span_id"] = format(context.span_id, "016x")
        elif current is not None:
            event_dict["trace_id"] = format(current.trace_id, "032x")
            event_dict["span_id"] = format(current.span_id, "016x")
    return event_dict


class _Active:
    """The process's logging set-up (logging is process-wide by nature)."""

    sink: ClassVar[LogSink | None] = None
    fast_access_json: ClassVar[bool] = False  # JSON output at info level or below
    process_fields: ClassVar[dict[str, Any]] = {}  # bound for the process's lifetime
    # How the access line starts: "{", then the process's fields rendered (see _render).
    access_prefix: ClassVar[bytes] = b"{"


def active_sink() -> LogSink | None:
    return _Active.sink


_access_logger = structlog.get_logger("gateway.access")


def bind_process_fields(**fields: Any) -> None:  # noqa: ANN401  # any JSON value
    """Fields on every line of this process (a worker's index): bound in structlog's context
    variables for every line, and kept here for the access line's fast path."""
    _Active.process_fields = {**_Active.process_fields, **fields}
    rendered = orjson.dumps(_Active.process_fields, default=str)
    _Active.access_prefix = b"{" if rendered == b"{}" else rendered[:-1] + b","
    structlog.contextvars.bind_contextvars(**fields)


def write_access_line(  # noqa: PLR0913, PLR0917  # the fields of the line, in their order
    method: str,
    route: str,
    path: str,
    status: int,
    duration_s: float,
    body_bytes: int,
    client_ip: str,
    request_id: str,
    trace_id: int,
    span_id: int,
    facts: Facts | None = None,
) -> None:
    """One access-log line (event ``request``), as every other line would render it;
    ``facts``: more fields of the answer (how a JSON-RPC call was answered).

    The hottest line of the service skips the processor chain in JSON mode: through
    structlog it cost ~17 us of a ~120 us `/healthz` request (py-spy). Here the request
    keeps its fields in a tuple and the sink renders the line, in one orjson call, when it
    writes its batch; it carries the same fields, the process's bound ones (worker) too.
    """
    fields = (
        method,
        route,
        path,
        status,
        duration_s,
        body_bytes,
        client_ip,
        request_id,
        trace_id,
        span_id,
        facts,
    )
    sink = _Active.sink
    if _Active.fast_access_json and sink is not None:
        sink.defer(_render_access_line, (_Active.access_prefix, time.time(), fields))
    else:
        _access_logger.info("request", **_access_fields(fields))


def _access_fields(fields: tuple[Any, ...]) -> dict[str, Any]:
    """The access line's own fields, as every format writes them."""
    (
        method,
        route,
        path,
        status,
        duration_s,
        body_bytes,
        client_ip,
        request_id,
        trace_id,
        span_id,
        facts,
    ) = fields
    line = {} if facts is None else facts.fields()  # the facts first, as before the own
    line["method"] = method
    line["route"] = route
    line["path"] = path
    line["status"] = status
    line["duration_ms"] = round(duration_s * 1000, 3)
    line["bytes"] = body_bytes
    line["client_ip"] = client_ip
    line["request_id"] = request_id
    line["trace_id"] = f"{trace_id:032x}"
    line["span_id"] = f"{span_id:016x}"
    return line


class Facts(Protocol):
    """How an answer was made (rpc/explain.py's ``Explain``): its access-line fields."""

    def fields(self) -> dict[str, str]:
        """A new dict each time (the access line adds its own fields to it)."""
        ...


def _render_access_line(deferred: tuple[Any, ...]) -> bytes:
    """The line as structlog's JSON renderer would write it (the process's fields, the
    access line's, event, level, timestamp), from its parts: the process's fields are
    rendered once (``access_prefix``), the constant ones are bytes."""
    prefix, now, fields = deferred
    return b"".join(
        (
            prefix,
            orjson.dumps(_access_fields(fields))[1:-1],
            b',"event":"request","level":"info","timestamp":"',
            timestamp(now).encode(),
            b'"}',
        )
    )


class _StampCache:
    """ISO-8601 UTC timestamps; the date-and-seconds part is formatted once a second."""

    second: ClassVar[int] = -1
    prefix: ClassVar[str] = ""


def timestamp(now: float | None = None) -> str:
    """``now`` (default: the current time) as ISO 8601 UTC with microseconds."""
    if now is None:
        now = time.time()
    second = int(now)
    if second != _StampCache.second:
        _StampCache.second = second
        _StampCache.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_StampCache.prefix}.{int((now - second) * 1e6):06d}Z"


def add_timestamp(
    _logger: object, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict["timestamp"] = timestamp()
    return event_dict


def _orjson_dumps(event: Mapping[str, Any], **_: object) -> bytes:
    return orjson.dumps(event, default=str)


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_timestamp,
        add_trace_context,
        redact_secrets,
    ]


class _SinkHandler(logging.Handler):
    """Standard-library records (aiohttp, asyncio, OpenTelemetry) into the same sink."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.msg(self.format(record).encode())
        except Exception:  # noqa: BLE001  # logging must never raise into the caller
            self.handleError(record)


def configure_logging(
    settings: LogSettings, *, stream: BinaryIO | None = None, cache: bool = True
) -> LogSink:
    """Configure structlog and route the standard library's logging through it.

    ``stream`` is where lines go (stdout's buffer by default); tests pass a buffer and
    ``cache=False`` so that they can configure again.
    """
    out = stream or sys.stdout.buffer
    console = settings.format == "console" or (
        settings.format == "auto" and stream is None and sys.stdout.isatty()
    )
    level = _LEVELS[settings.level]
    shared = _shared_processors()
    if console:
        renderer: Any = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.plain_traceback  # no locals (rich shows them)
        )
        encode: Any = str.encode
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        encode = None
    sink = LogSink(out)
    _Active.sink = sink
    _Active.fast_access_json = not console and level <= logging.INFO
    final = [renderer] if encode is None else [renderer, lambda _l, _n, text: encode(text)]
    structlog.configure(
        processors=[*shared, *([] if console else [_dict_tracebacks]), *final],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=SinkFactory(sink),
        cache_logger_on_first_use=cache,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if console else [_dict_tracebacks]),
            structlog.processors.JSONRenderer(
                serializer=lambda event, **_: orjson.dumps(event, default=str).decode()
            )
            if not console
            else renderer,
        ],
    )
    handler = _SinkHandler(sink)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.INFO))  # third-party debug chatter stays out
    # aiohttp's own access log is replaced by ours (one line per request, with trace ids).
    logging.getLogger("aiohttp.access").disabled = True
    server_log = logging.getLogger("aiohttp.server")
    server_log.filters[:] = [f for f in server_log.filters if not isinstance(f, MalformedHttp)]
    server_log.addFilter(MalformedHttp())
    return sink


class MalformedHttp(logging.Filter):
    """A request aiohttp cannot parse (a line over 8 KiB, a control character in a header,
    TLS on the plain port, a body that does not decompress) is the client's doing: one info
    line with the reason, not an error with a stack trace. The client has had its 400."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            reason = f"{type(exc).__name__}: {str(exc.message)[:200]}"
        elif isinstance(exc, web.RequestPayloadError):  # a body that does not decompress
            reason = "unreadable body: " + str(exc).replace("\n", " ")[:200]
        else:
            return True
        record.levelno, record.levelname = logging.INFO, "INFO"
        client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "malformed HTTP request from %s: %s", (client, reason)
        record.exc_info = None
        record.exc_text = None
        return True
