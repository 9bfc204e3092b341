import json
import subprocess
import sys

from gateway.cli import main


def test_check_config_prints_masked_settings(capsys):
    code = main(["check-config"], {"GATEWAY_DATABASE_URL": "postgresql://u:pw-secret@db/gw"})
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["storage"]["database_url"] == "postgresql://u:***@db/gw"


def test_check_config_rejects_a_bad_value_and_names_the_key():
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config"],
        env={"GATEWAY_LOG_LEVEL": "loud", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "log.level (from GATEWAY_LOG_LEVEL)" in result.stderr
    assert "'debug', 'info', 'warning' or 'error'" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_reads_a_file(tmp_path, capsys):
    config = tmp_path / "gw.toml"
    config.write_text("[server]\nport = 0\nhost = 'nope'\n[server.extra]\n")
    assert main(["check-config", "--config", str(config)], {}) == 1
    assert "server.extra" in capsys.readouterr().err


def test_check_config_warns_of_replicas_without_one_key_ring(capsys):
    environ = {"GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert main(["check-config"], environ) == 0
    assert "refuse each other's session tokens" in capsys.readouterr().err
    shared = {**environ, "GATEWAY_IDENTITY__KEYS_DIR": "/var/run/gateway/keys"}
    assert main(["check-config"], shared) == 0
    assert "warning" not in capsys.readouterr().err
