"""`python -m bench.bare_broker`: thingcore's broker without the registry, for comparison.

It reads the same settings as `thingcore serve` (`THINGCORE_*` variables, see
`bench.brokers`) and runs `broker.server.Broker` with them on uvloop, but with the broker's
default hooks, `broker.auth.AllowAll`: no authentication, no policy evaluation (the broker
skips `may_receive` entirely), no change feed and no TLS listener. The benchmark's
"policies off" against `thingcore serve`'s "policies on". SIGINT or SIGTERM stop it cleanly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys

from broker.server import Broker
from thingcore.app import raise_open_file_limit
from thingcore.config import Settings, load_settings

log = logging.getLogger("bench.bare_broker")


async def serve(settings: Settings) -> None:
    broker_settings = dataclasses.replace(settings.broker, tls_port=None)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with Broker(broker_settings, data_dir=settings.data_dir) as broker:
        log.info(
            "bare broker (AllowAll, no registry) serving mqtt on %s:%s",
            broker_settings.host,
            broker.ports.get("mqtt"),
        )
        await stop.wait()
        log.info("shutting down")


def main() -> int:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    raise_open_file_limit()
    loop_factory = None
    if settings.broker.use_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            log.warning("uvloop is not installed; using the stock asyncio loop")
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
