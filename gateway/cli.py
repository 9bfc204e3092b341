"""Command line: gateway serve | dev | check-config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway import eventloop
from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.errors import SettingsError
from gateway.server import serve_app
from gateway.storage import SchemaOutOfDate
from gateway.telemetry import configure_logging

if TYPE_CHECKING:
    from gateway.chain import DevChain

log = structlog.get_logger("gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", type=Path, help="TOML settings file")
        sub.add_argument(
            "--log-format", choices=["json", "console", "auto"], help="overrides GATEWAY_LOG_FORMAT"
        )

    serve = commands.add_parser("serve", help="run the gateway against the configured nodes")
    common(serve)
    serve.add_argument("--host", help="overrides GATEWAY_HOST")
    serve.add_argument("--port", type=int, help="overrides GATEWAY_PORT")
    serve.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT)")

    dev = commands.add_parser("dev", help="start anvil and the gateway on it (embedded defaults)")
    common(dev)
    dev.add_argument("--host", help="overrides GATEWAY_HOST (default 127.0.0.1)")
    dev.add_argument("--port", type=int, help="overrides GATEWAY_PORT (default 8080)")
    dev.add_argument("--anvil-port", type=int, default=0, help="anvil port (default: free)")
    dev.add_argument(
        "--block-time",
        type=float,
        default=2.0,
        help="mine a block every N seconds, so pages and subscriptions are live (default 2; "
        "0: only on each transaction)",
    )
    dev.add_argument(
        "--chains",
        type=_chain_ids,
        default=(31337,),
        help="chain ids, comma-separated: one anvil each, every one a network of the gateway "
        "(/rpc/<chain id>; the first is /rpc). Default 31337",
    )

    check = commands.add_parser("check-config", help="validate settings and print them, masked")
    common(check)

    keys = commands.add_parser("keys", help="session-token signing keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    for name, text in (
        ("rotate", "add a new signing key; the previous one keeps verifying"),
        ("list", "show the keys that sign and verify tokens"),
    ):
        common(keys_commands.add_parser(name, help=text))

    contracts = commands.add_parser("contracts", help="the project's contracts")
    contracts_commands = contracts.add_subparsers(dest="contracts_command", required=True)
    deploy = contracts_commands.add_parser(
        "deploy", help="deploy MerkleAnchor with the anchor key; record its address"
    )
    common(deploy)
    deploy.add_argument(
        "--network", help="the network to deploy on (a chain id or an alias; default: the default)"
    )

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    for name, text in (
        ("upgrade", "migrate the schema to this version's head"),
        ("current", "print the schema revision and the one this version needs"),
    ):
        common(db_commands.add_parser(name, help=text))
    return parser


def _chain_ids(value: str) -> tuple[int, ...]:
    try:
        chains = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        chains = ()
    if not chains or min(chains) < 1 or len(set(chains)) != len(chains):
        raise argparse.ArgumentTypeError("chain ids: distinct positive integers, e.g. 31337,31338")
    return chains


def _settings(
    args: argparse.Namespace, environ: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> Settings:
    overlay = dict(environ)
    if getattr(args, "host", None):
        overlay["GATEWAY_HOST"] = args.host
    if getattr(args, "port", None) is not None and args.command == "serve":
        overlay["GATEWAY_PORT"] = str(args.port)
    if args.log_format:
        overlay["GATEWAY_LOG_FORMAT"] = args.log_format
    overlay.update(extra or {})
    return load_settings(args.config, overlay)


def _run(settings: Settings) -> int:
    try:
        eventloop.run(serve_app(create_app(settings), settings), settings.server.event_loop)
    except (OSError, SchemaOutOfDate, SettingsError) as exc:  # port taken, schema behind, …
        log.error("cannot serve", error=str(exc))  # noqa: TRY400  # a clear line, no stack
        return 1
    return 0


def _dev(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from gateway.chain import DevChain, DevChainError  # noqa: PLC0415  # dev only

    state = Path(".gateway")
    # As `serve`: the flag, else the environment, else the dev default.
    host = args.host or environ.get("GATEWAY_HOST") or "127.0.0.1"
    try:
        port = args.port if args.port is not None else int(environ.get("GATEWAY_PORT") or 8080)
    except ValueError:
        print("gateway dev: GATEWAY_PORT must be a port number", file=sys.stderr)
        return 2
    try:
        with contextlib.ExitStack() as anvils:
            chains = [
                anvils.enter_context(
                    DevChain.start(
                        port=args.anvil_port if index == 0 else 0,
                        chain_id=chain_id,
                        block_time_s=args.block_time or None,
                        # The first chain's state where it always was.
                        log_dir=state / ("anvil" if index == 0 else f"anvil-{chain_id}"),
                    )
                )
                for index, chain_id in enumerate(args.chains)
            ]
            settings = _settings(args, environ, _dev_environment(chains, environ, host, port))
            configure_logging(settings.log)
            _print_banner(chains, settings)
            for chain in chains:
                _deploy_dev_contracts(settings, chain.url)
            return _run(settings)
    except DevChainError as exc:
        print(f"gateway dev: {exc}", file=sys.stderr)
        return 1


def _dev_environment(
    chains: Sequence[DevChain], environ: Mapping[str, str], host: str, port: int
) -> dict[str, str]:
    """The settings of ``gateway dev``: its anvils, state under .gateway/, dev keys."""
    first = chains[0]
    state = Path(".gateway")
    nodes = {}
    if len(chains) == 1:  # one network: the top-level settings, as ever
        nodes = {
            "GATEWAY_UPSTREAMS": f"{first.url}|{first.ws_url}",
            "GATEWAY_CHAIN_ID": str(first.chain_id),
        }
    else:
        networks = [
            {"chain_id": c.chain_id, "upstreams": [{"url": c.url, "ws_url": c.ws_url}]}
            for c in chains
        ]
        nodes = {"GATEWAY_NETWORKS": json.dumps(networks)}
    return {
        "GATEWAY_HOST": host,
        "GATEWAY_PORT": str(port),
        **nodes,
        "GATEWAY_DATABASE_URL": f"sqlite:///{state / 'gateway.db'}",
        "GATEWAY_IDENTITY__KEYS_DIR": str(state / "keys"),
        "GATEWAY_IDENTITY__COOKIE_SECURE": "false",  # plain http on loopback
        # anvil's public dev key #0 anchors (never a real key), every 5 seconds
        "GATEWAY_ANCHOR__PRIVATE_KEY": first.accounts[0].private_key,
        "GATEWAY_ANCHOR__DEPLOYMENTS_FILE": str(state / "deployments.json"),
        "GATEWAY_ANCHOR__INTERVAL_S": environ.get("GATEWAY_ANCHOR__INTERVAL_S", "5"),
        "GATEWAY_WEBAPP__ENABLED": environ.get("GATEWAY_WEBAPP__ENABLED", "true"),
        # gasless requests: anvil's dev key #9 pays (never a real key), for the example
        # Guestbook deployed with the forwarder
        "GATEWAY_RELAY__PRIVATE_KEY": first.accounts[9].private_key,
        "GATEWAY_RELAY__TARGETS": environ.get(
            "GATEWAY_RELAY__TARGETS", '{"Guestbook": ["sign(string)"]}'
        ),
        # a dApp's dev server (localhost:3000, :5173, …) may call it from a browser
        "GATEWAY_CORS_ORIGINS": environ.get("GATEWAY_CORS_ORIGINS", "*"),
        "GATEWAY_SIWE_DOMAINS": environ.get(
            "GATEWAY_SIWE_DOMAINS", f"127.0.0.1:{port},localhost:{port}"
        ),
    }


def _deploy_dev_contracts(settings: Settings, url: str) -> None:
    """A fresh anvil has no contracts: deploy them before the gateway starts."""
    from web3 import AsyncHTTPProvider, AsyncWeb3  # noqa: PLC0415  # dev only

    from gateway.chain.deploy import anchor_account, deploy_all  # noqa: PLC0415

    async def deploy() -> dict[str, str]:
        w3 = AsyncWeb3(AsyncHTTPProvider(url))
        try:
            account = anchor_account(settings.anchor)
            assert account is not None  # noqa: S101  # set by _dev
            return await deploy_all(w3, account, settings.anchor.deployments_file)
        finally:
            await w3.provider.disconnect()

    for name, address in asyncio.run(deploy()).items():
        print(f"  {name} deployed at {address}  ({url})", file=sys.stderr, flush=True)
    print(file=sys.stderr, flush=True)


def _print_banner(chains: Sequence[DevChain], settings: Settings) -> None:
    base = f"http://{settings.server.host}:{settings.server.port}"
    chain = chains[0]
    lines = [
        "",
        "  dApp gateway (dev)",
        f"  API      {base}    (JSON-RPC: {base}/rpc)",
        f"  Docs     {base}/docs",
        *(
            [f"  App      {base}/app/   (the reference dApp page)"]
            if settings.webapp.enabled
            else []
        ),
        f"  Metrics  {base}/metrics",
        f"  Ready    {base}/readyz",
        *(
            f"  anvil    {each.url}  chain id {each.chain_id}  (JSON-RPC: {base}/rpc/"
            f"{each.chain_id})  log {each.log_path}"
            for each in chains
        ),
        "",
        "  Funded dev accounts (anvil's public test mnemonic; never use them on a real chain):",
        *(f"  ({i}) {a.address}  {a.private_key}" for i, a in enumerate(chain.accounts[:5])),
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _keys(command: str, settings: Settings) -> int:
    from gateway.identity import keys  # noqa: PLC0415  # only this command needs it

    directory = settings.identity.keys_dir
    if command == "rotate":
        key = keys.rotate(directory, settings.identity.token_algorithm)
        print(
            f"new {key.algorithm} signing key {key.kid} in {directory}; gateways pick it up within "
            f"{settings.identity.key_reload_s:g}s"
        )
        return 0
    ring = keys.KeyRing.open(
        directory,
        keep=settings.identity.jwks_keys,
        create=False,
        algorithm=settings.identity.token_algorithm,
    )
    for jwk in ring.jwks()["keys"]:
        role = "signs" if jwk["kid"] == ring.current.kid else "verifies"
        print(f"{jwk['kid']}  {jwk['alg']}  {role}")
    return 0


async def _deploy(settings: Settings, network: str | None) -> int:
    from web3 import AsyncHTTPProvider, AsyncWeb3  # noqa: PLC0415  # only this command

    from gateway.chain.deploy import anchor_account, deploy_all  # noqa: PLC0415

    networks = settings.network_list()
    chosen = networks[0]
    if network is not None:
        found = [n for n in networks if network in n.names]
        if not found:
            known = ", ".join(name for n in networks for name in n.names) or "none"
            print(
                f"gateway contracts deploy: no network {network!r} (known: {known})",
                file=sys.stderr,
            )
            return 1
        chosen = found[0]
    account = anchor_account(settings.anchor)
    if account is None or not chosen.upstreams:
        print(
            "gateway contracts deploy: needs an anchor key (GATEWAY_ANCHOR__PRIVATE_KEY or "
            "a keystore) and an upstream (GATEWAY_UPSTREAMS, or the network's upstreams)",
            file=sys.stderr,
        )
        return 1
    # Recorded under the chain id the node reports (deployments.json, per chain).
    w3 = AsyncWeb3(AsyncHTTPProvider(chosen.upstreams[0].url))
    try:
        deployed = await deploy_all(w3, account, settings.anchor.deployments_file)
    finally:
        await w3.provider.disconnect()
    for name, address in deployed.items():
        print(f"{name} at {address}")
    print(
        f"(MerkleAnchor owned by {account.address}; recorded in {settings.anchor.deployments_file})"
    )
    return 0


async def _db(command: str, settings: Settings) -> int:
    from gateway.storage import Database, migrate  # noqa: PLC0415  # only this command

    database = Database.open(settings.storage.database_url.get_secret_value())
    try:
        if command == "upgrade":
            await migrate.upgrade(database)
        current = await migrate.current_revision(database)
        print(f"schema revision {current or 'none'} (this version needs {migrate.head_revision()})")
        return 0 if command == "upgrade" or current == migrate.head_revision() else 1
    finally:
        await database.close()


def _check_config(settings: Settings) -> int:
    print(json.dumps(settings.masked(), indent=2))
    for warning in settings.warnings():
        print(f"gateway: warning: {warning}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:  # noqa: PLR0911  # one return per command
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    if args.command == "dev":
        return _dev(args, env)
    try:
        settings = _settings(args, env)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"gateway: invalid setting {problem}", file=sys.stderr)
        return 1
    if args.command == "check-config":
        return _check_config(settings)
    if args.command == "keys":
        return _keys(args.keys_command, settings)
    if args.command == "db":
        return asyncio.run(_db(args.db_command, settings))
    if args.command == "contracts":
        return asyncio.run(_deploy(settings, args.network))
    configure_logging(settings.log)
    for warning in settings.warnings():
        log.warning("check the settings", detail=warning)
    workers = args.workers or settings.server.workers
    if workers > 1:
        from gateway.workers import serve_workers  # noqa: PLC0415

        return serve_workers(settings, workers)
    return _run(settings)


if __name__ == "__main__":
    sys.exit(main())
