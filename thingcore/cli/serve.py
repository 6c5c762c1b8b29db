"""``thingcore serve``: run the platform in the foreground."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler

import thingcore
from thingcore.app import App, run
from thingcore.config import load_settings


def serve(
    host: str | None = typer.Option(
        None, help="Address to listen on (default 127.0.0.1, or THINGCORE_BROKER__HOST)."
    ),
    port: int | None = typer.Option(
        None, help="Plain MQTT port (default 1884, or THINGCORE_BROKER__PORT); 0 picks a free one."
    ),
    tls_port: int | None = typer.Option(
        None,
        help="Mutual-TLS MQTT port for devices (default 8883, or THINGCORE_BROKER__TLS_PORT).",
    ),
    data_dir: Path | None = typer.Option(
        None, help="Data directory (default ./var, or THINGCORE_DATA_DIR)."
    ),
    log_level: str | None = typer.Option(
        None, help="DEBUG, INFO, WARNING or ERROR (default INFO, or THINGCORE_LOG_LEVEL)."
    ),
) -> None:
    """Start thingcore in the foreground: the MQTT broker on its listeners, and the registry.

    On first start it creates the development CA and the server certificate under the data
    directory and the registry database (SQLite, or PostgreSQL by THINGCORE_REGISTRY__DATABASE_URL).
    Devices connect with mutual TLS on the TLS port; local tools use the plain port.

    Settings come from THINGCORE_* environment variables and an optional thingcore.toml;
    these options override both. Ctrl+C shuts down cleanly (sessions and retained messages
    are saved); a second Ctrl+C exits at once.
    """
    overrides: dict[str, Any] = {}
    broker: dict[str, Any] = {}
    if host is not None:
        broker["host"] = host
    if port is not None:
        broker["port"] = port
    if tls_port is not None:
        broker["tls_port"] = tls_port
    if broker:
        overrides["broker"] = broker
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if log_level is not None:
        overrides["log_level"] = log_level.upper()
    settings = load_settings(**overrides)
    console = Console(stderr=True, soft_wrap=True)
    logging.basicConfig(
        level=settings.log_level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
    )

    def ready(app: App) -> None:
        listeners = ", ".join(
            f"{name} on {settings.broker.host}:{bound}" for name, bound in app.broker.ports.items()
        )
        console.print(
            f"thingcore {thingcore.__version__} serving {listeners}; data in {settings.data_dir}/",
            highlight=False,
        )
        if "mqtts" in app.broker.ports:
            console.print(
                "Register a device: thingcore things create NAME --with-cert --policy POLICY"
                f" (devices trust {app.identity.registry.ca_dir}/ca.crt)",
                highlight=False,
            )
        console.print("Press Ctrl+C to stop.", style="dim")

    run(settings, ready)
