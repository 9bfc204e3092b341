"""The deployment files parse and carry what operators rely on."""

import shutil
import subprocess
from pathlib import Path

import pytest
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


COMPOSE = ROOT / "observability" / "compose.yaml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_pins_every_image_and_waits_for_what_it_needs():
    services = _compose()["services"]
    for name, service in services.items():
        image = service.get("image", "")
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert tag, f"{name}: {image!r} has no tag"
        assert tag not in {"latest", "stable", "nightly"}, f"{name}: {image!r}"
    gateway = services["gateway"]["depends_on"]
    assert gateway["db-upgrade"] == {"condition": "service_completed_successfully"}
    assert gateway["contracts"] == {"condition": "service_completed_successfully"}
    assert gateway["redis"] == {"condition": "service_healthy"}
    assert services["db-upgrade"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for healthy in ("anvil", "postgres", "redis", "gateway"):
        assert "healthcheck" in services[healthy], healthy
    assert services["contracts"]["command"] == ["gateway", "contracts", "deploy"]
    environment = services["gateway"]["environment"]
    assert environment["GATEWAY_WEBAPP__ENABLED"] == "true"
    assert environment["GATEWAY_RELAY__PRIVATE_KEY"].startswith("0x")
    shared = environment["GATEWAY_ANCHOR__DEPLOYMENTS_FILE"]
    assert services["contracts"]["environment"]["GATEWAY_ANCHOR__DEPLOYMENTS_FILE"] == shared


def test_docker_compose_validates_it():
    docker = shutil.which("docker")
    plugin = docker and subprocess.run(
        [docker, "compose", "version"], capture_output=True, check=False
    )
    if not plugin or plugin.returncode != 0:
        pytest.skip("docker with its compose plugin is not installed here")
    checked = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
