"""Local buckets: folders of objects that rules write to, like S3.

An object is the plain file ``<root>/<bucket>/<key>``, so people and other tools read it where it
lies. What S3 keeps beside the body (content type, user metadata, ETag, last modified, and the id
of the delivery that wrote it) is a JSON sidecar at ``<root>/<bucket>/.thingcore-meta/<key>``: the
metadata tree mirrors the object tree name for name. Mirroring without a suffix keeps the two
trees' shapes identical, so the sidecars can collide only where the objects already do (a
``<key>.json`` sidecar of ``a`` would be the folder ``a.json`` that the key ``a.json/x`` needs,
and a 255-byte segment would overflow with the suffix).

Key segments beginning with ``.thingcore-`` are reserved: ``.thingcore-meta`` is the sidecar
folder and ``.thingcore-tmp-*`` the temporary files of writes in progress, so no key can name
either and listings skip both.

Writes are atomic and durable: the body goes to a temporary file in the object's folder, is
fsynced and renamed over the object, then the sidecar the same way. A sidecar records the
inode, size and modification time of the body it describes; a body that does not match its
sidecar (a crash between the two renames, or a file replaced by hand) is described from the
file itself, with content type ``application/octet-stream``, so nothing written is ever lost or
misdescribed.

Every put appends an object-created event to the bucket event log,
``<root>/.thingcore-events.sqlite`` (``rules.triggers.bucket_log``), which functions subscribed
to the bucket (``[[events]] bucket = ...``) tail. The append is the last step of a put, inside
it: a put that returns has logged its event; a crash after the object's rename and before the
append leaves the object without its event, and repeating the put (as the rules outbox repeats
a delivery until it returns) writes the object and logs the event again. An overwrite is logged
like any put (S3's ``ObjectCreated:Put``). Deletes are not logged: there are no
``ObjectRemoved`` events yet. The log is opened on the first put, so a store that never writes
never creates it; bucket names cannot begin with ``.``, so it is never taken for a bucket.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import ipaddress
import json
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rules.config import LocalTargetSettings
from rules.errors import TargetError

if TYPE_CHECKING:
    from rules.triggers.bucket_log import BucketEventLog

META_DIR = ".thingcore-meta"
"""The sidecar folder in each bucket (a reserved key segment, never listed)."""
RESERVED_PREFIX = ".thingcore-"
"""Key segments beginning with this are thingcore's own files (sidecars, temporary files)."""
TMP_PREFIX = ".thingcore-tmp-"
EVENTS_FILE = ".thingcore-events.sqlite"
"""The bucket event log in the root folder (``rules.triggers.bucket_log``)."""
DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_KEY_BYTES = 1024
"""S3's limit on an object key, in bytes of UTF-8."""
MAX_SEGMENT_BYTES = 255
"""The longest file name Linux, macOS and Windows file systems accept (NAME_MAX)."""
MAX_METADATA_BYTES = 2048
"""S3's limit on user metadata: the UTF-8 bytes of every key and value added together."""
_LOCK_STRIPES = 64
_DIR_RETRIES = 5
"""Tries to create a file in a folder that a concurrent delete may remove as empty."""

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_BUCKET_RULES = (
    "3-63 characters of lowercase letters, digits, dots and hyphens, beginning and ending with "
    "a letter or digit, as in S3"
)


class BucketError(TargetError):
    """A bucket or key that cannot be used, an object that does not exist, or a disk failure
    (``retryable``: a full or read-only disk may be fixed while the delivery waits)."""


class NoSuchBucket(BucketError):
    """The bucket does not exist (S3's ``NoSuchBucket``)."""


class NoSuchKey(BucketError):
    """The bucket has no object with this key (S3's ``NoSuchKey``)."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What S3's HeadObject says about an object, plus the delivery that wrote it."""

    bucket: str
    key: str
    size: int
    content_type: str
    metadata: dict[str, str]
    etag: str
    """The hex MD5 of the body in double quotes, as S3 gives the ETag of a single-part upload."""
    last_modified: float
    """Epoch seconds."""
    message_id: str | None
    """The delivery id that wrote the object (thingcore's); None if it was written otherwise."""

    def as_dict(self) -> dict[str, Any]:
        """boto3's names for the fields; ``LastModified`` as ISO 8601 UTC with milliseconds."""
        return {
            "Bucket": self.bucket,
            "Key": self.key,
            "Size": self.size,
            "ContentType": self.content_type,
            "Metadata": dict(self.metadata),
            "ETag": self.etag,
            "LastModified": iso8601(self.last_modified),
            "MessageId": self.message_id,
        }


@dataclass(frozen=True, slots=True)
class BucketInfo:
    name: str
    objects: int
    size: int
    """Bytes of the object bodies (sidecars not counted)."""

    def as_dict(self) -> dict[str, Any]:
        return {"Name": self.name, "Objects": self.objects, "Size": self.size}


def iso8601(epoch: float) -> str:
    """``2024-05-01T12:00:00.123Z``: the form of S3's ``LastModified``."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


# -- names ---------------------------------------------------------------------------------------


def check_bucket(name: object) -> str:
    """``name`` if it is a valid S3 bucket name, else a non-retryable ``BucketError``."""
    if not isinstance(name, str):
        raise BucketError(f"a bucket name must be a string, not {type(name).__name__}")
    problem = _bucket_problem(name)
    if problem is not None:
        raise BucketError(f"invalid bucket name {name!r}: {problem}; use {_BUCKET_RULES}")
    return name


def _bucket_problem(name: str) -> str | None:
    if not 3 <= len(name) <= 63:
        return f"it has {len(name)} characters"
    if not _BUCKET_NAME.fullmatch(name):
        return "it has a character other than a-z, 0-9, '.' and '-', or begins or ends with one"
    if ".." in name:
        return "it has two dots in a row"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        return "it is formatted as an IP address"
    # S3 reserves these for its own naming schemes and refuses them too.
    for prefix in ("xn--", "sthree-"):
        if name.startswith(prefix):
            return f"names beginning with {prefix!r} are reserved"
    for suffix in ("-s3alias", "--ol-s3"):
        if name.endswith(suffix):
            return f"names ending with {suffix!r} are reserved"
    return None


def check_key(key: object) -> list[str]:
    """The path segments of a valid object key, else a non-retryable ``BucketError``.

    Keys become paths, so beyond S3's 1-1024 bytes of UTF-8 a key must not make an empty
    segment (a leading ``/``, ``//``, a trailing ``/``), a ``.`` or ``..`` segment, a NUL, a
    segment over 255 bytes or one beginning with ``.thingcore-``.
    """
    if not isinstance(key, str):
        raise BucketError(f"an object key must be a string, not {type(key).__name__}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise BucketError(f"invalid key {key!r}: it is not valid UTF-8 text") from None
    shown = key if size <= 120 else key[:100] + "..."
    rule = None
    if size == 0:
        rule = "it is empty; a key is 1 to 1024 bytes of UTF-8"
    elif size > MAX_KEY_BYTES:
        rule = f"it is {size} bytes of UTF-8; a key is at most {MAX_KEY_BYTES} (as in S3)"
    elif "\0" in key:
        rule = "it contains a NUL character, which cannot be in a file name"
    elif key.startswith("/"):
        rule = (
            "it begins with '/' (an absolute path); keys are relative to the bucket, "
            "drop the leading '/'"
        )
    elif key.endswith("/"):
        rule = (
            "it ends with '/', which would name a folder, not a file; "
            "end the key with a name (a template value that came out empty?)"
        )
    elif "//" in key:
        rule = (
            "it contains '//' (an empty path segment); a template value between two '/' "
            "probably came out empty"
        )
    if rule is not None:
        raise BucketError(f"invalid key {shown!r}: {rule}")
    segments = key.split("/")
    for segment in segments:
        if segment in (".", ".."):
            rule = (
                f"it has a {segment!r} segment, which would point outside its folder; "
                "local bucket keys cannot contain '.' or '..' between slashes"
            )
        elif segment.startswith(RESERVED_PREFIX):
            rule = (
                f"the segment {segment!r} begins with {RESERVED_PREFIX!r}, which is reserved "
                f"for thingcore's own files ({META_DIR} holds the metadata); rename it"
            )
        elif len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            rule = (
                f"a segment between slashes is {len(segment.encode('utf-8'))} bytes, more than "
                f"the {MAX_SEGMENT_BYTES} a file name may have; split it with '/'"
            )
        if rule is not None:
            raise BucketError(f"invalid key {shown!r}: {rule}")
    return segments


def check_metadata(metadata: object) -> dict[str, str]:
    """A copy of valid user metadata (string keys and values within S3's 2 KB)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise BucketError(f"metadata must be a map of strings, not {type(metadata).__name__}")
    total = 0
    for name, value in metadata.items():
        if not isinstance(name, str) or not name:
            raise BucketError(f"metadata names must be non-empty strings, not {name!r}")
        if not isinstance(value, str):
            raise BucketError(
                f"metadata {name!r} is {type(value).__name__}; values must be strings"
            )
        try:
            total += len(name.encode("utf-8")) + len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise BucketError(f"metadata {name!r} is not valid UTF-8 text") from None
    if total > MAX_METADATA_BYTES:
        raise BucketError(
            f"user metadata is {total} bytes (names and values in UTF-8); S3 allows at most "
            f"{MAX_METADATA_BYTES}: drop or shorten entries"
        )
    return dict(metadata)


# -- the store -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    """An object file found by a walk: its key, path and ``stat``."""

    key: str
    path: Path
    stat: os.stat_result


class BucketStore:
    """The buckets under one root folder; safe to use from several threads at once.

    Args:
        root: The folder of the buckets (created by the first put).
        synchronous: SQLite ``synchronous`` of the event log: NORMAL survives a killed
            process, FULL a power loss.
    """

    def __init__(self, root: Path, *, synchronous: str = "NORMAL") -> None:
        self.root = root
        self.events_path = root / EVENTS_FILE
        """The bucket event log every put appends to."""
        self.synchronous = synchronous
        # Striped: puts to one key take turns (so body and sidecar stay a pair), puts to
        # different keys mostly run side by side, and the number of locks is bounded.
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._events: BucketEventLog | None = None
        self._events_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: LocalTargetSettings, data_dir: Path) -> BucketStore:
        return cls(settings.buckets(data_dir), synchronous=settings.synchronous)

    def events(self) -> BucketEventLog:
        """The bucket event log, opened (and created) on first use."""
        with self._events_lock:
            if self._events is None:
                from rules.triggers.bucket_log import BucketEventLog

                self._events = BucketEventLog(self.events_path, synchronous=self.synchronous)
            return self._events

    def close(self) -> None:
        """Close the event log if it is open (a later put opens it again)."""
        with self._events_lock:
            if self._events is not None:
                self._events.close()
                self._events = None

    # -- writing ---------------------------------------------------------------------------------

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: dict[str, str] | None = None,
        message_id: str | None = None,
    ) -> ObjectInfo:
        """Store ``body`` as ``key``, creating the bucket and replacing any object of that key,
        and log the object-created event (see the module docstring).

        Raises:
            BucketError: An invalid name or argument, a collision with a folder of objects, or
                a disk or event log failure (``retryable``: the put may be repeated whole).
        """
        check_bucket(bucket)
        segments = check_key(key)
        user_metadata = check_metadata(metadata)
        if not isinstance(content_type, str) or not content_type:
            raise BucketError(f"content type must be a non-empty string, not {content_type!r}")
        if not isinstance(body, bytes | bytearray | memoryview):
            raise BucketError(f"an object body must be bytes, not {type(body).__name__}")
        data = bytes(body)
        bucket_dir = self.root / bucket
        path = bucket_dir.joinpath(*segments)
        with self._lock(bucket, key):
            self._check_no_collision(bucket, key, segments)
            try:
                written = _write_atomic(path, data)
            except IsADirectoryError:
                raise self._folder_collision(bucket, key) from None
            except (FileExistsError, NotADirectoryError):
                raise self._file_collision(bucket, key, segments) from None
            except OSError as exc:
                raise _disk_error("write", path, exc) from None
            info = ObjectInfo(
                bucket=bucket,
                key=key,
                size=len(data),
                content_type=content_type,
                metadata=user_metadata,
                etag=_etag(data),
                last_modified=time.time(),
                message_id=message_id,
            )
            sidecar = {
                "contentType": info.content_type,
                "metadata": info.metadata,
                "etag": info.etag,
                "lastModified": info.last_modified,
                "messageId": info.message_id,
                "body": _fingerprint(written),
            }
            meta_path = self._meta_path(bucket, segments)
            try:
                self._write_sidecar(meta_path, json.dumps(sidecar).encode(), bucket_dir / META_DIR)
            except OSError as exc:
                # The body is in place and describes itself (as application/octet-stream);
                # the delivery is retried for its metadata.
                raise _disk_error("write the metadata of", meta_path, exc) from None
            # Under the key's lock, so the log orders one key's events as its writes. A failure
            # here fails the put: repeated, it writes the object again and logs the event.
            self.events().append(bucket, key, info.size, info.etag, at=info.last_modified)
        return info

    def delete(self, bucket: str, key: str) -> bool:
        """Delete one object; False if there was none (or no such bucket)."""
        check_bucket(bucket)
        segments = check_key(key)
        bucket_dir = self.root / bucket
        path = bucket_dir.joinpath(*segments)
        with self._lock(bucket, key):
            return self._delete(bucket_dir, path, self._meta_path(bucket, segments))

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object whose key begins with ``prefix`` ("" for all); how many."""
        check_bucket(bucket)
        bucket_dir = self.root / bucket
        count = 0
        for entry in list(self._walk(bucket, prefix)):
            segments = entry.key.split("/")
            with self._lock(bucket, entry.key):
                if self._delete(bucket_dir, entry.path, self._meta_path(bucket, segments)):
                    count += 1
        return count

    # -- reading ---------------------------------------------------------------------------------

    def get(self, bucket: str, key: str) -> tuple[bytes, ObjectInfo]:
        """The body of an object and what its head says."""
        path = self._object_path(bucket, key)
        try:
            # Non-blocking, so that a FIFO someone left in the folder cannot hang the reader.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            try:
                found = os.fstat(fd)
                if not stat.S_ISREG(found.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "not a file", str(path))
                chunks = []
                while chunk := os.read(fd, 1 << 20):
                    chunks.append(chunk)
                data = b"".join(chunks)
            finally:
                os.close(fd)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._not_found(bucket, key) from None
        except OSError as exc:
            raise _disk_error("read", path, exc) from None
        return data, self._info(bucket, key, found, lambda: data)

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """What S3's HeadObject says about an object, without reading the body if it can."""
        path = self._object_path(bucket, key)
        try:
            found = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(bucket, key) from None
        except OSError as exc:
            raise _disk_error("read", path, exc) from None
        if not stat.S_ISREG(found.st_mode):
            raise self._not_found(bucket, key)
        return self._info(bucket, key, found, partial(_read_body, path))

    def list(self, bucket: str, prefix: str = "", *, limit: int | None = None) -> list[ObjectInfo]:
        """The objects whose keys begin with ``prefix``, sorted by key as S3's ListObjectsV2."""
        check_bucket(bucket)
        if not (self.root / bucket).is_dir():
            raise NoSuchBucket(f"no bucket named {bucket!r} (see `thingcore buckets ls`)")
        if limit is not None and limit < 1:
            return []
        found: list[ObjectInfo] = []
        for entry in self._walk(bucket, prefix):
            found.append(self._info(bucket, entry.key, entry.stat, partial(_read_body, entry.path)))
            if limit is not None and len(found) >= limit:
                break
        return found

    def buckets(self) -> builtins.list[BucketInfo]:
        """Every bucket by name, with its object count and size."""
        try:
            names = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _disk_error("list", self.root, exc) from None
        found = []
        for name in names:
            if _bucket_problem(name) is not None:
                continue  # not a bucket: something else kept in the folder
            entries = list(self._walk(name, ""))
            found.append(BucketInfo(name, len(entries), sum(e.stat.st_size for e in entries)))
        return found

    # -- internals -------------------------------------------------------------------------------

    def _lock(self, bucket: str, key: str) -> threading.Lock:
        return self._locks[hash((bucket, key)) % _LOCK_STRIPES]

    def _object_path(self, bucket: str, key: str) -> Path:
        check_bucket(bucket)
        return (self.root / bucket).joinpath(*check_key(key))

    def _meta_path(self, bucket: str, segments: builtins.list[str]) -> Path:
        return (self.root / bucket / META_DIR).joinpath(*segments)

    def _not_found(self, bucket: str, key: str) -> BucketError:
        if not (self.root / bucket).is_dir():
            return NoSuchBucket(f"no bucket named {bucket!r} (see `thingcore buckets ls`)")
        return NoSuchKey(
            f"no object {key!r} in bucket {bucket!r} (see `thingcore buckets ls {bucket}`)"
        )

    def _check_no_collision(self, bucket: str, key: str, segments: builtins.list[str]) -> None:
        path = self.root / bucket
        for i, segment in enumerate(segments[:-1]):
            path = path / segment
            if path.is_file():
                raise self._file_collision(bucket, key, segments[: i + 1])
        if (path / segments[-1]).is_dir():
            raise self._folder_collision(bucket, key)

    def _file_collision(self, bucket: str, key: str, segments: builtins.list[str]) -> BucketError:
        for i in range(1, len(segments) + 1):
            if (self.root / bucket).joinpath(*segments[:i]).is_file():
                existing = "/".join(segments[:i])
                break
        else:
            existing = "/".join(segments[:-1])
        return BucketError(
            f"cannot store {key!r} in bucket {bucket!r}: {existing!r} is an object, and on disk "
            f"{existing!r} cannot be a file and a folder at once (S3 allows it, a local bucket "
            f"cannot); delete {existing!r} or use keys that do not nest under an object"
        )

    def _folder_collision(self, bucket: str, key: str) -> BucketError:
        return BucketError(
            f"cannot store {key!r} in bucket {bucket!r}: there are objects under {key + '/'!r}, "
            f"and on disk {key!r} cannot be a folder and a file at once (S3 allows it, a local "
            "bucket cannot); delete those objects or choose another key"
        )

    def _write_sidecar(self, meta_path: Path, data: bytes, meta_root: Path) -> None:
        # The object tree is authoritative and has just been checked, so anything in the way
        # in the mirror tree is a stale sidecar left by a crash between two deletes.
        try:
            _write_atomic(meta_path, data)
        except (IsADirectoryError, FileExistsError, NotADirectoryError):
            _clear_way(meta_path, meta_root)
            _write_atomic(meta_path, data)

    def _delete(self, bucket_dir: Path, path: Path, meta_path: Path) -> bool:
        if not path.is_file():
            return False  # nothing, or a folder of other objects
        # The sidecar goes first: a crash in between leaves a body that describes itself.
        for gone in (meta_path, path):
            try:
                gone.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                if gone == path:
                    return False  # deleted meanwhile by someone else
            except OSError as exc:
                raise _disk_error("delete", gone, exc) from None
        # S3 has no folders: remove the ones this delete left empty, so that the key of a
        # former folder can become an object.
        _prune(path.parent, bucket_dir)
        _prune(meta_path.parent, bucket_dir / META_DIR)
        return True

    def _info(
        self, bucket: str, key: str, found: os.stat_result, read: Callable[[], bytes]
    ) -> ObjectInfo:
        """The head of the object whose body has ``found`` as its stat; ``read()`` gives the
        body when the sidecar is missing or describes another body."""
        meta_path = self._meta_path(bucket, key.split("/"))
        sidecar: dict[str, Any] | None
        try:
            sidecar = json.loads(meta_path.read_bytes())
        except (OSError, ValueError):
            sidecar = None
        if isinstance(sidecar, dict) and sidecar.get("body") == _fingerprint(found):
            metadata = sidecar.get("metadata")
            return ObjectInfo(
                bucket=bucket,
                key=key,
                size=found.st_size,
                content_type=str(sidecar.get("contentType") or DEFAULT_CONTENT_TYPE),
                metadata=dict(metadata) if isinstance(metadata, dict) else {},
                etag=str(sidecar.get("etag")),
                last_modified=float(sidecar.get("lastModified", found.st_mtime)),
                message_id=sidecar.get("messageId"),
            )
        data = read()
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=len(data),
            content_type=DEFAULT_CONTENT_TYPE,
            metadata={},
            etag=_etag(data),
            last_modified=found.st_mtime,
            message_id=None,
        )

    def _walk(self, bucket: str, prefix: str) -> Iterator[_Entry]:
        """The object files whose keys begin with ``prefix``, in key order, lazily."""
        base, _, _ = prefix.rpartition("/")
        start = self.root / bucket
        if base:
            parts = base.split("/")
            if any(p in ("", ".", "..") or p.startswith(RESERVED_PREFIX) for p in parts):
                return  # no valid key begins so, and the path must not leave the bucket
            if "\0" in base:
                return
            start = start.joinpath(*parts)
        yield from self._walk_dir(start, f"{base}/" if base else "", prefix)

    def _walk_dir(self, folder: Path, at: str, prefix: str) -> Iterator[_Entry]:
        try:
            with os.scandir(folder) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise _disk_error("list", folder, exc) from None
        # Sorting a folder's files by name and its folders by name + "/" walks the keys in
        # exactly the order of the whole key strings (S3's order), without sorting them all.
        order = []
        for entry in entries:
            if entry.name.startswith(RESERVED_PREFIX):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                continue
            order.append((entry.name + "/" if is_dir else entry.name, is_dir, entry))
        order.sort(key=lambda item: item[0])
        for name, is_dir, entry in order:
            key = at + name
            if is_dir:
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk_dir(Path(entry.path), key, prefix)
            elif key.startswith(prefix):
                try:
                    found = entry.stat()
                except FileNotFoundError:
                    continue  # deleted while we walked
                except OSError as exc:
                    raise _disk_error("read", Path(entry.path), exc) from None
                if stat.S_ISREG(found.st_mode):
                    yield _Entry(key, Path(entry.path), found)


# -- files ---------------------------------------------------------------------------------------


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def _fingerprint(found: os.stat_result) -> list[int]:
    """What identifies one version of a body: a rename keeps inode and mtime, a rewrite not."""
    return [found.st_ino, found.st_size, found.st_mtime_ns]


def _read_body(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _disk_error("read", path, exc) from None


def _disk_error(doing: str, path: Path, exc: OSError) -> BucketError:
    reason = exc.strerror or str(exc)
    return BucketError(f"cannot {doing} {path}: {reason}", retryable=True)


def _write_atomic(path: Path, data: bytes) -> os.stat_result:
    """Write ``data`` to ``path`` through a temporary file and a rename; the file's stat.

    Missing folders up to ``path`` are created, and every new name made durable.
    """
    folder = path.parent
    for attempt in range(_DIR_RETRIES):
        _make_dirs(folder)
        tmp = folder / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            if attempt == _DIR_RETRIES - 1:
                raise
            continue  # a concurrent delete removed the folder as empty: make it again
        break
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            written = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)
    return written


def _make_dirs(folder: Path) -> None:
    if folder.is_dir():
        return
    missing = []
    at = folder
    while not at.is_dir():
        missing.append(at)
        if at == at.parent:
            break
        at = at.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:
            if not new.is_dir():
                raise
        _fsync_dir(new.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the names in ``folder`` durable (a rename is only durable once its folder is)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. Windows cannot open a folder: the rename is as durable as it gets there
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the data itself was fsynced
    finally:
        os.close(fd)


def _clear_way(meta_path: Path, meta_root: Path) -> None:
    """Remove stale sidecars that block ``meta_path``: a folder there, or a file above it."""
    if meta_path.is_dir():
        shutil.rmtree(meta_path)
    at = meta_path.parent
    while at != meta_root and meta_root in at.parents:
        if at.exists() and not at.is_dir():
            at.unlink()
        at = at.parent


def _prune(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents below ``stop`` while they are empty."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or already gone): the folders above are not empty either
        folder = folder.parent
