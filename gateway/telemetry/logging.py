"""structlog set-up: JSON lines on stdout (or console text), trace ids and redaction on every line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import IO, Any, BinaryIO

import orjson
import structlog
from opentelemetry import trace

from gateway.config import LogSettings

# Keys whose values are secrets or credentials: never logged in full.
_SECRET_KEYS = frozenset(
    {
        "authorization",
        "cookie",
        "password",
        "private_key",
        "secret",
        "signature",
        "token",
        "access_token",
        "refresh_token",
        "set-cookie",
    }
)
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def redact(value: object) -> str:
    """Keep a short prefix so operators can correlate, never the whole secret."""
    text = str(value)
    if len(text) <= 10:
        return "***"
    return f"{text[:6]}…({len(text)} chars)"


def redact_secrets(
    _logger: object, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in _SECRET_KEYS.intersection(event_dict):
        event_dict[key] = redact(event_dict[key])
    return event_dict


def add_trace_context(
    _logger: object, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Put the current OpenTelemetry trace and span id on the line, unless already bound."""
    if "trace_id" not in event_dict:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event_dict["trace_id"] = format(context.trace_id, "032x")
            event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def _orjson_dumps(event: Mapping[str, Any], **_: object) -> bytes:
    return orjson.dumps(event, default=str)


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
        redact_secrets,
    ]


def configure_logging(
    settings: LogSettings, *, stream: BinaryIO | None = None, force_json: bool = False
) -> None:
    """Configure structlog and route the standard library's logging through it.

    ``stream`` is where JSON lines go (stdout's buffer by default); tests pass a buffer.
    """
    out = stream or sys.stdout.buffer
    console = not force_json and (
        settings.format == "console" or (settings.format == "auto" and sys.stdout.isatty())
    )
    level = _LEVELS[settings.level]
    shared = _shared_processors()
    renderer: Any
    if console:
        renderer = structlog.dev.ConsoleRenderer()
        structlog.configure(
            processors=[*shared, renderer],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=structlog.PrintLoggerFactory(_text_stream(out)),
            cache_logger_on_first_use=False,
        )
    else:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.dict_tracebacks,
                structlog.processors.JSONRenderer(serializer=_orjson_dumps),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=structlog.BytesLoggerFactory(out),
            cache_logger_on_first_use=False,
        )
        renderer = structlog.processors.JSONRenderer(
            serializer=lambda event, **_: orjson.dumps(event, default=str).decode()
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if console else [structlog.processors.dict_tracebacks]),
            renderer,
        ],
    )
    handler = logging.StreamHandler(_text_stream(out))
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.INFO))  # third-party debug chatter stays out
    # aiohttp's own access log is replaced by ours (one line per request, with trace ids).
    logging.getLogger("aiohttp.access").disabled = True


def _text_stream(binary: BinaryIO) -> IO[str]:
    if binary is getattr(sys.stdout, "buffer", None):
        return sys.stdout
    import io  # noqa: PLC0415  # only tests log into a bare buffer

    return io.TextIOWrapper(binary, encoding="utf-8", line_buffering=True, write_through=True)
