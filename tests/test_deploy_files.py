"""The deployment files parse and carry what operators rely on."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_kubernetes_manifests_have_probes_scaling_and_no_secrets():
    documents = list(
        yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "gateway.yaml").read_text())
    )
    kinds = {document["kind"] for document in documents}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "ServiceMonitor",
        "Job",
    } <= kinds
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    secrets = [e for e in container["env"] if "valueFrom" in e]
    assert {e["name"] for e in secrets} >= {
        "GATEWAY_DATABASE_URL",
        "GATEWAY_REDIS_URL",
        "GATEWAY_ANCHOR__PRIVATE_KEY",
    }
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]["gateway.toml"]
    assert 'migrate_on_start = "never"' in config


def test_nginx_config_balances_and_upgrades_websockets():
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    assert text.count("server 127.0.0.1:808") == 3
    assert "proxy_set_header Upgrade $http_upgrade" in text
    assert "X-Forwarded-For" in text


def test_the_configmap_is_valid_gateway_config(tmp_path):
    from gateway.config import load_settings

    documents = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "gateway.yaml").read_text())
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]["gateway.toml"]
    (tmp_path / "gateway.toml").write_text(config)
    settings = load_settings(tmp_path / "gateway.toml", {})
    assert settings.server.metrics_port == 9100
    assert settings.storage.migrate_on_start == "never"
