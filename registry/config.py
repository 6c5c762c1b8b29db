"""The registry's settings: database, ARN naming, the development CA and anonymous clients."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ANONYMOUS_POLICY = "thingcore-anonymous"


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    database_url: str | None = None
    """SQLAlchemy URL of the registry database; None means ``<data dir>/thingcore.db``
    (SQLite). ``postgresql://user@host/db`` uses PostgreSQL through psycopg."""
    database_schema: str | None = None
    """PostgreSQL schema to use (created if missing); lets several installations or test runs
    share one database."""
    sqlite_synchronous: str = "NORMAL"
    """NORMAL survives a killed process; FULL also survives power loss (slower commits)."""
    region: str = "us-east-1"
    account_id: str = "000000000000"
    """Region and account in ARNs; policies copied from AWS match when these agree."""
    server_names: tuple[str, ...] = ()
    """Extra names for the server certificate, e.g. a Raspberry Pi's LAN name or address."""
    anonymous_policy: str | None = DEFAULT_ANONYMOUS_POLICY
    """Policy for clients of the plain listener (no certificate); None or "" refuses them."""
    change_poll_interval: float = 0.2
    """Seconds between reads of the change feed (SQLite; PostgreSQL is notified at once)."""
    policy_cache_size: int = 1000
    """Authorization decisions cached per session before the cache is cleared."""

    def __post_init__(self) -> None:
        if self.change_poll_interval <= 0:
            raise ValueError("change_poll_interval must be greater than 0")
        if self.sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA")
        if not (self.account_id.isdigit() and len(self.account_id) == 12):
            raise ValueError("account_id must be 12 digits, as in AWS ARNs")
