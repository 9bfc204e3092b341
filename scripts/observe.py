"""`make observe`: the SRE's local stack without Docker, next to `make dev`.

Starts Jaeger v2 (built once by scripts/build-jaeger.sh: OTLP receiver, memory storage,
query API and UI) and Prometheus (the Debian package the setup installs) with the project's
alert rules, scraping the gateway; writes `.gateway/observe/otlp.env`, which `make dev`
reads so the gateway exports its traces to this Jaeger; prints the URLs; stops both on
Ctrl-C (or SIGTERM) and removes the file.

Ports (environment): OBSERVE_OTLP_PORT (4318), OBSERVE_JAEGER_PORT (16686),
OBSERVE_PROMETHEUS_PORT (9090); the gateway is scraped at GATEWAY_PORT (8080).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("OBSERVE_DIR", ROOT / ".gateway" / "observe"))

JAEGER_CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
  jaeger_query:
    storage:
      traces: memory_store
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
"""

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - {rules}
scrape_configs:
  - job_name: gateway
    static_configs:
      - targets: ["127.0.0.1:{gateway}"]
"""


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _wait(url: str, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"observe: {what} stopped:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.2)
    sys.exit(f"observe: {what} did not answer at {url}")


def main() -> None:
    otlp, query = _port("OBSERVE_OTLP_PORT", 4318), _port("OBSERVE_JAEGER_PORT", 16686)
    prometheus_port = _port("OBSERVE_PROMETHEUS_PORT", 9090)
    gateway = _port("GATEWAY_PORT", 8080)
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        sys.exit("observe: prometheus is not installed (scripts/system-deps.sh installs it)")
    jaeger = subprocess.run(
        [str(ROOT / "scripts" / "build-jaeger.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "jaeger.yaml").write_text(
        JAEGER_CONFIG.format(
            otlp=otlp, query=query, query_grpc=query + 1, health=_port("OBSERVE_HEALTH_PORT", 13133)
        )
    )
    rules = ROOT / "observability" / "alerts.yml"
    (STATE / "prometheus.yml").write_text(PROMETHEUS_CONFIG.format(rules=rules, gateway=gateway))
    processes = []
    with (STATE / "jaeger.log").open("wb") as jaeger_log:
        processes.append(
            subprocess.Popen(
                [jaeger, "--config", str(STATE / "jaeger.yaml")],
                stdout=jaeger_log,
                stderr=subprocess.STDOUT,
            )
        )
    with (STATE / "prometheus.log").open("wb") as prometheus_log:
        processes.append(
            subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={STATE / 'prometheus.yml'}",
                    f"--storage.tsdb.path={STATE / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--enable-feature=exemplar-storage",
                ],
                stdout=prometheus_log,
                stderr=subprocess.STDOUT,
            )
        )
    env_file = STATE / "otlp.env"

    def stop(*_args: object) -> None:
        env_file.unlink(missing_ok=True)
        for process in processes:
            process.terminate()
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _wait(f"http://127.0.0.1:{query}/api/services", "Jaeger", processes[0], STATE / "jaeger.log")
    _wait(
        f"http://127.0.0.1:{prometheus_port}/-/ready",
        "Prometheus",
        processes[1],
        STATE / "prometheus.log",
    )
    env_file.write_text(
        f"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{otlp}\nOTEL_SERVICE_NAME=gateway\n"
    )
    print(
        f"observe: Jaeger    http://127.0.0.1:{query}/  (OTLP/HTTP in on 127.0.0.1:{otlp})\n"
        f"observe: Prometheus http://127.0.0.1:{prometheus_port}/  (scraping 127.0.0.1:{gateway},"
        f" rules {rules})\n"
        f"observe: `make dev` now exports its traces here (it reads {env_file});"
        " Ctrl-C stops both",
        flush=True,
    )
    while True:
        for process in processes:
            if process.poll() is not None:
                stop()
        time.sleep(0.5)


if __name__ == "__main__":
    main()
