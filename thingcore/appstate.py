"""The data-directory side of ``thingcore apply``: what is there, what the app made, and
carrying out a plan (``thingcore.appplan``).

``observe`` reads the rules, function files, queues, buckets and topics a plan compares; it
makes no file that is not there (a dry run writes nothing). ``execute`` makes the changes in
the plan's order and records what the app owns in ``<data dir>/app-state.json``, also when a
change fails part way (then everything it may have made is kept in the state, so the next
apply finishes the job and deletes only what is the app's).

A running server needs nothing more: rule changes reach it through the database's change feed,
function and sidecar changes through its scan of the functions folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from registry.db import Database
from rules.local.buckets import BucketStore
from rules.local.queues import QueueError, QueueStore
from rules.local.topics import TopicStore
from rules.store import RuleStore
from thingcore.appfile import AppSpec
from thingcore.appplan import (
    AppState,
    Change,
    Current,
    FunctionFiles,
    Plan,
    StoredRuleView,
)
from thingcore.config import Settings
from thingcore.errors import ThingcoreError

STATE_FILE = "app-state.json"


def state_path(settings: Settings) -> Path:
    return settings.data_dir / STATE_FILE


def read_state(path: Path) -> AppState:
    """The state an earlier apply wrote; an empty one when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AppState()
    except OSError as exc:
        raise ThingcoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return AppState.from_dict(json.loads(text))
    except ValueError as exc:
        raise ThingcoreError(
            f"{path} is not an app state thingcore wrote ({exc}); move it away to apply "
            "afresh (what is there and matches the app file is taken as the app's)"
        ) from None


def write_state(path: Path, state: AppState) -> None:
    _write_atomic(path, json.dumps(state.as_dict(), indent=2, sort_keys=True) + "\n")


# -- what is there -------------------------------------------------------------------------------


def observe(settings: Settings, db: Database, spec: AppSpec, state: AppState) -> Current:
    """What the data directory holds of what ``spec`` and ``state`` name."""
    local = settings.rules.local
    data_dir = settings.data_dir
    rules = {r.name: StoredRuleView(r.payload, r.managed) for r in RuleStore(db).all()}
    folder = local.functions(data_dir)
    functions = {
        name: FunctionFiles(_read(folder / f"{name}.py"), _read(folder / f"{name}.toml"))
        for name in set(spec.functions) | state.functions
    }
    queues: dict[str, int] = {}
    topics: dict[str, dict[str, bool]] = {}
    queues_path = local.queues(data_dir)
    if queues_path.exists():  # opening a store makes its file: a dry run must not
        with QueueStore.from_settings(local, data_dir) as store:
            queues = {q.name: q.visible + q.in_flight for q in store.queues()}
            if local.topics(data_dir).exists():
                with TopicStore.from_settings(local, data_dir, store) as topic_store:
                    topics = {
                        t.name: {s.queue: s.raw for s in t.subscriptions}
                        for t in topic_store.topics()
                    }
    elif local.topics(data_dir).exists():
        # Topics without a queues file: their subscriptions, read without making it.
        with ExitStack() as stack:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            store = stack.enter_context(QueueStore(scratch / "queues.sqlite"))
            topic_store = stack.enter_context(TopicStore.from_settings(local, data_dir, store))
            topics = {
                t.name: {s.queue: s.raw for s in t.subscriptions} for t in topic_store.topics()
            }
    buckets = {b.name: b.objects for b in BucketStore.from_settings(local, data_dir).buckets()}
    return Current(rules, functions, queues, buckets, topics)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return ""  # not what the app writes: it differs
    except OSError as exc:
        raise ThingcoreError(f"cannot read {path}: {exc.strerror or exc}") from None


# -- making the changes --------------------------------------------------------------------------


@dataclass(slots=True)
class _Stores:
    settings: Settings
    db: Database
    stack: ExitStack
    _queues: QueueStore | None = None
    _topics: TopicStore | None = None

    def queues(self) -> QueueStore:
        if self._queues is None:
            local = self.settings.rules.local
            self._queues = self.stack.enter_context(
                QueueStore.from_settings(local, self.settings.data_dir)
            )
        return self._queues

    def topics(self) -> TopicStore:
        if self._topics is None:
            local = self.settings.rules.local
            self._topics = self.stack.enter_context(
                TopicStore.from_settings(
                    local,
                    self.settings.data_dir,
                    self.queues(),
                    region=self.settings.registry.region,
                    account=self.settings.registry.account_id,
                )
            )
        return self._topics


def execute(plan: Plan, spec: AppSpec, settings: Settings, db: Database, old: AppState) -> None:
    """Make ``plan``'s changes and write the state; blocked changes must be resolved first."""
    if plan.blocked:
        raise ThingcoreError("the plan has blocked changes; nothing was applied")
    path = state_path(settings)
    done = False
    try:
        with ExitStack() as stack:
            stores = _Stores(settings, db, stack)
            for change in plan.pending:
                try:
                    _make(change, spec, settings, stores)
                except ThingcoreError as exc:
                    raise ThingcoreError(
                        f"{change.action} {change.label} failed: {exc} (changes before it were "
                        "made; apply again once it is fixed)"
                    ) from exc
        done = True
    finally:
        # After a failure, keep owning what may have been made: the next apply sorts it out.
        write_state(path, plan.state if done else old.union(plan.state))


def _make(change: Change, spec: AppSpec, settings: Settings, stores: _Stores) -> None:
    local = settings.rules.local
    data_dir = settings.data_dir
    name = change.name
    delete = change.action == "delete"
    if change.kind == "rule":
        store = RuleStore(stores.db)
        if delete:
            store.delete(name)
        else:
            # Not `managed`: RuleStore.apply (`thingcore rules apply DIR`) deletes every
            # managed rule its folder lacks, so the app's rules would go; the state owns them.
            store.put(spec.rules[name], managed=False)
    elif change.kind == "function":
        folder = local.functions(data_dir)
        code, sidecar = folder / f"{name}.py", folder / f"{name}.toml"
        if delete:
            _remove(code)  # the code first: no moment with a handler and a missing sidecar
            _remove(sidecar)
            return
        function = spec.functions[name]
        if function.sidecar is None:
            _remove(sidecar)
        else:
            _write_atomic(sidecar, function.sidecar)
        _write_atomic(code, function.code)
    elif change.kind == "queue":
        if delete:
            with suppress(QueueError):  # gone already: nothing to delete
                stores.queues().delete_queue(name)
        else:
            stores.queues().create_queue(name)
    elif change.kind == "bucket":
        folder = local.buckets(data_dir) / name
        try:
            if delete:
                BucketStore.from_settings(local, data_dir).delete_prefix(name, "")
                shutil.rmtree(folder, ignore_errors=False)
            else:
                folder.mkdir(parents=True, exist_ok=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ThingcoreError(f"bucket folder {folder}: {exc.strerror or exc}") from None
    elif change.kind == "topic":
        if delete:
            stores.topics().delete(name)
        else:
            stores.topics().create(name)
    else:
        topic, queue = name.split(":", 1)
        if delete:
            stores.topics().unsubscribe(topic, queue)
        else:
            raw = next(s.raw for s in spec.topics[topic] if s.queue == queue)
            stores.topics().subscribe(topic, queue, raw=raw)


# -- files ---------------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, rename it over ``path``:
    a server scanning the folder sees the old file or the new one, never half of one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ThingcoreError(f"cannot write {path}: {exc.strerror or exc}") from None


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ThingcoreError(f"cannot delete {path}: {exc.strerror or exc}") from None
