"""thingcore's settings: one object composed of each package's own settings dataclass.

Sources, strongest first: explicit overrides (CLI flags), ``THINGCORE_*`` environment variables
(nested with ``__``: ``THINGCORE_BROKER__PORT=1885``), then ``thingcore.toml`` in the working
directory or the file named by ``THINGCORE_CONFIG`` (``[broker]`` table: ``port = 1885``).
This module is the only place that reads the environment.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from broker.config import BrokerSettings
from registry.config import RegistrySettings
from rules.config import RulesSettings
from shadows.config import ShadowSettings
from thingcore.errors import ConfigError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="THINGCORE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path("var")
    """Where the database, certificates, snapshots, buckets and queues live."""
    log_level: LogLevel = "INFO"
    broker: BrokerSettings = BrokerSettings()
    registry: RegistrySettings = RegistrySettings()
    shadows: ShadowSettings = ShadowSettings()
    rules: RulesSettings = RulesSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("THINGCORE_CONFIG", "thingcore.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_path))


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once, at the edge; raise ``ConfigError`` with every problem found."""
    config = os.environ.get("THINGCORE_CONFIG")
    if config and not Path(config).is_file():
        raise ConfigError(f"THINGCORE_CONFIG names {config}, which is not a file")
    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        where = config or "thingcore.toml"
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
