from pathlib import Path

import pytest

from gateway.config import load_settings, mask_url, parse_upstreams
from gateway.errors import SettingsError


def test_defaults_follow_the_architecture():
    settings = load_settings(None, {})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.storage.database_url.get_secret_value() == "sqlite:///./.gateway/gateway.db"
    assert settings.log.level == "info"
    assert settings.upstreams == ()


def test_environment_wins_over_the_file(tmp_path: Path):
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[server]\nport = 9000\nhost = "0.0.0.0"\n[log]\nlevel = "debug"\n'
        '[[upstreams]]\nurl = "http://file-node:8545"\nweight = 3\n'
    )
    settings = load_settings(config, {"GATEWAY_PORT": "9100", "GATEWAY_LOG_LEVEL": "WARNING"})
    assert settings.server.port == 9100
    assert settings.server.host == "0.0.0.0"
    assert settings.log.level == "warning"
    assert settings.upstreams[0].url == "http://file-node:8545"
    assert settings.upstreams[0].weight == 3


def test_upstreams_variable_takes_http_and_ws_pairs():
    settings = load_settings(
        None, {"GATEWAY_UPSTREAMS": "http://a:8545|ws://a:8546, https://b.example/rpc"}
    )
    first, second = settings.upstreams
    assert (first.url, first.ws_url, first.name) == ("http://a:8545", "ws://a:8546", "a:8545")
    assert (second.url, second.ws_url) == ("https://b.example/rpc", None)
    assert parse_upstreams("") == []


def test_nested_keys_by_double_underscore():
    settings = load_settings(
        None,
        {
            "GATEWAY_SERVER__MAX_BODY_BYTES": "2048",
            "GATEWAY_UPSTREAM_POOL__READINESS_TIMEOUT_S": "0.5",
        },
    )
    assert settings.server.max_body_bytes == 2048
    assert settings.upstream_pool.readiness_timeout_s == 0.5


def test_otel_variables_configure_tracing():
    settings = load_settings(
        None,
        {
            "OTEL_SERVICE_NAME": "edge-gw",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20secret",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=sre",
        },
    )
    tracing = settings.tracing
    assert tracing.service_name == "edge-gw"
    assert tracing.exporter_endpoint == "http://collector:4318/v1/traces"
    assert tracing.sampler == "parentbased_traceidratio"
    assert tracing.sampler_arg == 0.1
    assert tracing.resource_attributes == {"deployment.environment": "prod", "team": "sre"}
    masked = str(settings.masked())
    assert "Bearer%20secret" not in masked
    assert "Bearer secret" not in masked
    traces_only = load_settings(
        None,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318/custom",
        },
    )
    assert traces_only.tracing.exporter_endpoint == "http://b:4318/custom"
    assert load_settings(None, {"OTEL_SDK_DISABLED": "true"}).tracing.enabled is False


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"GATEWAY_LOG_LEVEL": "verbose"}, ["log.level (from GATEWAY_LOG_LEVEL)", "'debug'"]),
        ({"GATEWAY_PORT": "http"}, ["server.port (from GATEWAY_PORT)"]),
        ({"GATEWAY_PORT": "70000"}, ["server.port", "65535"]),
        ({"GATEWAY_UPSTREAMS": "ftp://node"}, ["upstreams.0.url", "http or https"]),
        ({"GATEWAY_UPSTREAMS": "http://a|http://b"}, ["upstreams.0.ws_url", "ws or wss"]),
        ({"GATEWAY_DATABASE_URL": "mysql://x/y"}, ["storage.database_url", "sqlite, postgresql"]),
        ({"GATEWAY_CHAIN_ID": "0"}, ["chain_id"]),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, ["tracing.sampler (from OTEL_TRACES_SAMPLER)"]),
        ({"GATEWAY_SERVER__COLOUR": "blue"}, ["server.colour", "unknown setting"]),
    ],
)
def test_bad_values_name_the_key(environ, names):
    with pytest.raises(SettingsError) as caught:
        load_settings(None, environ)
    text = str(caught.value)
    for name in names:
        assert name in text


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as caught:
        load_settings(None, {"GATEWAY_LOG_LEVEL": "x", "GATEWAY_PORT": "-1"})
    assert len(caught.value.problems) == 2


def test_bad_file_is_reported(tmp_path: Path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nport=1")
    with pytest.raises(SettingsError, match=r"broken\.toml"):
        load_settings(broken, {})
    with pytest.raises(SettingsError, match=r"missing\.toml"):
        load_settings(tmp_path / "missing.toml", {})


def test_secrets_are_masked():
    settings = load_settings(
        None,
        {
            "GATEWAY_DATABASE_URL": "postgresql://gw:hunter2@db:5432/gw",
            "GATEWAY_UPSTREAMS": "https://node.example/v3/0123456789abcdef0123456789abcdef",
        },
    )
    dumped = str(settings.masked())
    assert "hunter2" not in dumped
    assert "0123456789abcdef0123456789abcdef" not in dumped
    assert mask_url("sqlite:///./x.db") == "sqlite:///./x.db"


def test_relay_secrets_are_masked_and_targets_checked():
    settings = load_settings(
        None,
        {
            "GATEWAY_RELAY__PRIVATE_KEY": "0x" + "11" * 32,
            "GATEWAY_RELAY__OPERATOR_TOKEN": "operator-token-value",
            "GATEWAY_RELAY__WEBHOOKS": '["https://hooks.example/relay"]',
            "GATEWAY_RELAY__WEBHOOK_SECRET": "webhook-secret-value",
            "GATEWAY_RELAY__TARGETS": '{"Guestbook": ["sign(string)"]}',
        },
    )
    masked = str(settings.masked())
    for secret in ("11" * 32, "operator-token-value", "webhook-secret-value"):
        assert secret not in masked
    with pytest.raises(SettingsError, match="not a function signature"):
        load_settings(None, {"GATEWAY_RELAY__TARGETS": '{"Guestbook": ["sign string"]}'})
    with pytest.raises(SettingsError, match="bump_percent"):
        load_settings(None, {"GATEWAY_RELAY__BUMP_PERCENT": "5"})  # nodes want 10 %
