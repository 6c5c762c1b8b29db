"""`python -m bench.amqtt_broker CONFIG`: amqtt's broker with its contrib shadow plugin.

The baseline of the shadow-update workload. It runs `amqtt.broker.Broker` as amqtt's own
`amqtt -c CONFIG` command does (stock asyncio loop, INFO logging, start, then shutdown on
SIGINT or SIGTERM), with three changes, each needed to run the workload at all or in
amqtt's favour:

- A client may publish to `$shadow/...`, the shadow plugin's request topics. amqtt 0.12.1
  hands every PUBLISH to its plugins (MESSAGE_RECEIVED, where `ShadowPlugin` picks up the
  update) and then closes the connection of any client that published to a topic starting
  with "$" (it cites [MQTT-4.7.2-1], which only keeps such topics out of wildcard matches).
  So a device could send one update per connection. `ShadowBroker` fires the same event for
  `$shadow/` topics and keeps the connection, and does not route the request any further
  (nothing subscribes to request topics here, and stock amqtt never does either).
- Each new shadow version gets a fresh primary key. amqtt keeps every version as a row and
  turns an update into an insert of a copy (`convert_update_to_insert` in
  `amqtt/contrib/shadows/models.py`), but it sets the copy's id to "" rather than letting the
  declared default (a new UUID) apply. So the second version of the first shadow updated is
  stored with id "", and every later update of any existing shadow fails on the primary key
  (an IntegrityError in a task nobody awaits: no accepted, no rejected, a traceback in the
  log). `DurableShadowPlugin` gives such a row a new UUID before it is inserted.
- `DurableShadowPlugin` is amqtt's `ShadowPlugin` with its SQLite database in WAL mode with
  `synchronous=NORMAL`, as thingcore's is: every update committed before it is answered,
  surviving a killed process (not a power cut). amqtt otherwise gets SQLite's defaults
  (rollback journal, `synchronous=FULL`: an fsync per commit), which are slower.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import uuid
from typing import Any

from amqtt.broker import Broker
from amqtt.contrib.shadows import ShadowPlugin
from amqtt.contrib.shadows.models import Shadow
from amqtt.events import BrokerEvents
from amqtt.utils import read_yaml_config
from sqlalchemy import event

SHADOW_PREFIX = "$shadow/"

log = logging.getLogger("bench.amqtt_broker")


class ShadowBroker(Broker):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt's broker, letting clients publish shadow requests (see the module docstring)."""

    async def _handle_message_delivery(
        self, client_session: Any, handler: Any, wait_deliver: asyncio.Future[Any]
    ) -> bool:
        message = wait_deliver.result()
        topic = getattr(message, "topic", None)
        if isinstance(topic, str) and topic.startswith(SHADOW_PREFIX):
            # Exactly what the stock method does before its "$" check, minus the disconnect.
            await self.plugins_manager.fire_event(
                BrokerEvents.MESSAGE_RECEIVED,
                client_id=client_session.client_id,
                message=message,
            )
            return True
        result: bool = await super()._handle_message_delivery(client_session, handler, wait_deliver)
        return result


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _fresh_id(_mapper: Any, _connection: Any, target: Any) -> None:
    if not target.id:
        target.id = str(uuid.uuid4())  # what the model's column default would have given


class DurableShadowPlugin(ShadowPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt's `ShadowPlugin` with a fresh primary key for each shadow version and
    thingcore's SQLite durability settings (WAL, NORMAL); see the module docstring."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        if not event.contains(Shadow, "before_insert", _fresh_id):
            event.listen(Shadow, "before_insert", _fresh_id)
        engine = self._engine
        if engine.url.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)


async def serve(config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    broker = ShadowBroker(config, loop=loop)
    await broker.start()
    log.info("amqtt broker with the shadow plugin started")
    try:
        await stop.wait()
    finally:
        await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.amqtt_broker CONFIG", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] :: %(levelname)s - %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)  # as amqtt's command does
    config = read_yaml_config(args[0])
    if config is None:
        print(f"cannot read {args[0]}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
