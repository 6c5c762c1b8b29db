"""Local buckets on real files under ``tmp_path``: objects, sidecars, names, atomicity, threads."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from rules.config import LocalTargetSettings
from rules.local.buckets import (
    META_DIR,
    BucketError,
    BucketStore,
    NoSuchBucket,
    NoSuchKey,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "buckets"


@pytest.fixture
def store(root: Path) -> BucketStore:
    return BucketStore(root)


def etag(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()} if path.exists() else set()


# -- round trip ----------------------------------------------------------------------------------


def test_put_get_head_list_delete_round_trip(store: BucketStore, root: Path) -> None:
    body = b'{"temperature": 21.5}'
    put = store.put(
        "telemetry",
        "sensors/dev-1/reading.json",
        body,
        content_type="application/json",
        metadata={"device": "dev-1", "rule": "archive"},
        message_id="msg-42",
    )
    assert put.size == len(body)
    assert put.etag == etag(body)
    assert put.message_id == "msg-42"

    # The object is the plain file; the sidecar mirrors its path under the metadata folder.
    assert (root / "telemetry/sensors/dev-1/reading.json").read_bytes() == body
    sidecar = json.loads((root / "telemetry" / META_DIR / "sensors/dev-1/reading.json").read_text())
    assert sidecar["contentType"] == "application/json"

    got, info = store.get("telemetry", "sensors/dev-1/reading.json")
    assert got == body
    assert info == put
    assert store.head("telemetry", "sensors/dev-1/reading.json") == put
    assert store.list("telemetry") == [put]

    shown = put.as_dict()
    assert shown["Key"] == "sensors/dev-1/reading.json"
    assert shown["ContentType"] == "application/json"
    assert shown["Metadata"] == {"device": "dev-1", "rule": "archive"}
    assert shown["ETag"] == etag(body)
    assert shown["MessageId"] == "msg-42"
    assert datetime.fromisoformat(shown["LastModified"]).timestamp() == pytest.approx(
        put.last_modified, abs=0.001
    )
    assert [b.as_dict() for b in store.buckets()] == [
        {"Name": "telemetry", "Objects": 1, "Size": len(body)}
    ]

    assert store.delete("telemetry", "sensors/dev-1/reading.json") is True
    assert store.delete("telemetry", "sensors/dev-1/reading.json") is False
    with pytest.raises(NoSuchKey, match="no object 'sensors/dev-1/reading.json'"):
        store.get("telemetry", "sensors/dev-1/reading.json")
    # Folders left empty go (S3 has none); the bucket stays, empty.
    assert [p.name for p in (root / "telemetry").iterdir()] == [META_DIR]
    assert store.list("telemetry") == []
    assert [b.as_dict() for b in store.buckets()] == [
        {"Name": "telemetry", "Objects": 0, "Size": 0}
    ]


def test_defaults_and_settings(tmp_path: Path) -> None:
    store = BucketStore.from_settings(LocalTargetSettings(), tmp_path)
    assert store.root == tmp_path / "buckets"
    assert store.buckets() == []  # nothing created before the first put
    info = store.put("raw", "blob", b"\x00\x01")
    assert (info.content_type, info.metadata, info.message_id) == (
        "application/octet-stream",
        {},
        None,
    )
    moved = BucketStore.from_settings(LocalTargetSettings(buckets_dir=tmp_path / "b"), tmp_path)
    assert moved.root == tmp_path / "b"


def test_list_sorts_by_key_and_filters_by_prefix(store: BucketStore) -> None:
    # '-' sorts before '/', so S3 lists "a-b" between "a" folders' siblings; a naive tree walk
    # would list "a/x" first.
    keys = ["a/x", "a-b", "a/c/d", "b", "a/c-e", "ab", "a/c/a"]
    for key in keys:
        store.put("order", key, key.encode())
    assert [o.key for o in store.list("order")] == sorted(keys)
    assert [o.key for o in store.list("order", "a/")] == ["a/c-e", "a/c/a", "a/c/d", "a/x"]
    assert [o.key for o in store.list("order", "a/c")] == ["a/c-e", "a/c/a", "a/c/d"]
    assert [o.key for o in store.list("order", "a")] == sorted(k for k in keys if k[0] == "a")
    assert [o.key for o in store.list("order", limit=3)] == sorted(keys)[:3]
    assert store.list("order", "zzz") == []
    assert store.list("order", "../") == []
    assert store.list("order", "a//") == []
    with pytest.raises(NoSuchBucket, match="no bucket named 'ghost'"):
        store.list("ghost")


def test_overwrite_replaces_body_and_metadata(store: BucketStore) -> None:
    store.put("b-1", "k", b"first", content_type="text/plain", metadata={"v": "1"})
    second = store.put("b-1", "k", b"second!", metadata={"w": "2"}, message_id="m2")
    body, info = store.get("b-1", "k")
    assert body == b"second!"
    assert info == second
    assert (info.content_type, info.metadata) == ("application/octet-stream", {"w": "2"})
    assert len(store.list("b-1")) == 1


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "rule"),
    [
        ("ab", "2 characters"),
        ("a" * 64, "64 characters"),
        ("My-Bucket", "character other than"),
        ("-bucket", "begins or ends"),
        ("bucket.", "begins or ends"),
        ("my..bucket", "two dots"),
        ("192.168.1.10", "IP address"),
        ("xn--bucket", "reserved"),
        ("bucket-s3alias", "reserved"),
        ("../etc", "character other than"),
        ("a/b", "character other than"),
    ],
)
def test_invalid_bucket_names(store: BucketStore, root: Path, bucket: str, rule: str) -> None:
    with pytest.raises(BucketError, match=rule) as caught:
        store.put(bucket, "key", b"x")
    assert caught.value.retryable is False
    assert "3-63 characters" in str(caught.value)  # and says what a valid name is
    assert not root.exists()


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "empty"),
        ("k" * 1025, "1025 bytes"),
        ("é" * 513, "1026 bytes"),
        ("a\0b", "NUL"),
        ("/etc/passwd", "absolute"),
        ("sensors//x.json", "'//'"),
        ("sensors/", "ends with '/'"),
        ("../x", "'..' segment"),
        ("a/../../b", "'..' segment"),
        ("./x", "'.' segment"),
        ("a/.", "'.' segment"),
        (f"{META_DIR}/x", "reserved"),
        ("a/.thingcore-tmp-123", "reserved"),
        ("x" * 256, "256 bytes"),
        ("bad\udcff", "not valid UTF-8"),
    ],
)
def test_invalid_keys_never_write(store: BucketStore, tmp_path: Path, key: str, rule: str) -> None:
    before = files_under(tmp_path)
    with pytest.raises(BucketError, match=rule) as caught:
        store.put("safe", key, b"x")
    assert caught.value.retryable is False
    with pytest.raises(BucketError, match=rule):
        store.head("safe", key)
    with pytest.raises(BucketError, match=rule):
        store.delete("safe", key)
    # '..' two levels up from a bucket would still be under tmp_path: nothing appeared anywhere.
    assert files_under(tmp_path) == before
    assert not (tmp_path / "data").exists()


def test_empty_template_value_error_is_understandable(store: BucketStore) -> None:
    with pytest.raises(BucketError) as caught:
        store.put("telemetry", "sensors//x.json", b"{}")
    message = str(caught.value)
    assert "'sensors//x.json'" in message
    assert "came out empty" in message


def test_longest_key_fits(store: BucketStore) -> None:
    key = "/".join(["s" * 255] * 3 + ["s" * 254, "s"])
    assert len(key) == 1024
    store.put("long", key, b"x")
    assert store.get("long", key)[0] == b"x"


def test_object_and_folder_cannot_share_a_name(store: BucketStore) -> None:
    store.put("nest", "a/b", b"x")
    with pytest.raises(BucketError, match="objects under 'a/'") as caught:
        store.put("nest", "a", b"y")
    assert caught.value.retryable is False
    assert "cannot be a folder and a file" in str(caught.value)

    store.put("nest", "c", b"z")
    with pytest.raises(BucketError, match="'c' is an object") as caught:
        store.put("nest", "c/d/e", b"w")
    assert caught.value.retryable is False
    assert "delete 'c'" in str(caught.value)
    with pytest.raises(NoSuchKey):
        store.head("nest", "a")  # a folder is not an object
    assert store.delete("nest", "a") is False
    assert [o.key for o in store.list("nest")] == ["a/b", "c"]

    # Once the folder's objects are gone, its name is free for an object.
    store.delete("nest", "a/b")
    assert store.put("nest", "a", b"now").size == 3


# -- atomicity and crashes -----------------------------------------------------------------------


def test_no_temporary_files_are_left(store: BucketStore, root: Path) -> None:
    for i in range(5):
        store.put("tidy", f"k/{i}", b"v" * i, metadata={"i": str(i)})
    store.put("tidy", "k/0", b"again")
    names = {p.name for p in files_under(root)}
    assert not [n for n in names if n.startswith(".thingcore-tmp-")]
    # Five bodies, five sidecars; the object-created log lives beside the buckets.
    assert len(files_under(root / "tidy")) == 10


def test_body_without_sidecar_describes_itself(store: BucketStore, root: Path) -> None:
    # A crash between the body's rename and the sidecar's, or a file dropped in by hand.
    body = b"written by another tool"
    (root / "manual/in").mkdir(parents=True)
    (root / "manual/in/file.txt").write_bytes(body)
    info = store.head("manual", "in/file.txt")
    assert (info.size, info.etag, info.content_type) == (
        len(body),
        etag(body),
        "application/octet-stream",
    )
    assert info.message_id is None
    assert info.last_modified == pytest.approx((root / "manual/in/file.txt").stat().st_mtime)
    assert store.get("manual", "in/file.txt") == (body, info)
    assert store.list("manual") == [info]


def test_stale_sidecar_is_not_trusted(store: BucketStore, root: Path) -> None:
    store.put("stale", "k", b"old", content_type="text/plain", message_id="m1")
    # The body replaced without its sidecar (what a crash after the body's rename leaves).
    (root / "stale/k").write_bytes(b"new body")
    info = store.head("stale", "k")
    assert (info.etag, info.size, info.content_type, info.message_id) == (
        etag(b"new body"),
        8,
        "application/octet-stream",
        None,
    )


def test_stale_sidecars_do_not_block_writes(store: BucketStore, root: Path) -> None:
    # Deletes remove the sidecar before the body, so only a hand-made mess leaves sidecars
    # without objects; the object tree is the truth, and a put clears them out of its way.
    (root / "mess" / META_DIR / "a").mkdir(parents=True)
    (root / "mess" / META_DIR / "a/b").write_text("{}")
    info = store.put("mess", "a", b"x", content_type="text/plain")
    assert store.head("mess", "a") == info


def test_a_full_disk_is_retryable(
    store: BucketStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put("full", "first", b"x")

    def no_space(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patched:
        patched.setattr(os, "write", no_space)
        with pytest.raises(BucketError, match="full/second: No space left on device") as caught:
            store.put("full", "second", b"y")
    assert caught.value.retryable is True
    assert store.get("full", "first")[0] == b"x"
    assert [o.key for o in store.list("full")] == ["first"]
    assert not [p for p in files_under(root) if p.name.startswith(".thingcore-tmp-")]


# -- limits and threads ----------------------------------------------------------------------------


def test_user_metadata_is_limited_to_2_kb(store: BucketStore) -> None:
    store.put("meta", "fits", b"", metadata={"k": "v" * 2047})
    with pytest.raises(BucketError, match="2049 bytes.*at most 2048") as caught:
        store.put("meta", "too-big", b"", metadata={"k": "v" * 2048})
    assert caught.value.retryable is False
    with pytest.raises(BucketError, match="values must be strings"):
        store.put("meta", "typed", b"", metadata={"n": 1})  # type: ignore[dict-item]
    assert [o.key for o in store.list("meta")] == ["fits"]


@pytest.mark.parametrize("same_key", [False, True], ids=["different-keys", "same-key"])
def test_concurrent_puts_from_threads(store: BucketStore, root: Path, same_key: bool) -> None:
    workers, per_worker = 8, 20
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def writer(n: int) -> Callable[[], None]:
        def run() -> None:
            try:
                start.wait(timeout=10)
                for i in range(per_worker):
                    key = "shared/k" if same_key else f"w{n}/k{i}"
                    body = f"{n}:{i}".encode()
                    store.put("threads", key, body, metadata={"writer": f"{n}:{i}"})
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)

        return run

    threads = [threading.Thread(target=writer(n)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    listed = store.list("threads")
    assert len(listed) == (1 if same_key else workers * per_worker)
    for info in listed:
        body, got = store.get("threads", info.key)
        # Body and sidecar are a pair: the metadata names the write whose body is there.
        assert got.metadata == {"writer": body.decode()}
        assert got.etag == etag(body)
    assert not [p for p in files_under(root) if p.name.startswith(".thingcore-tmp-")]


def test_delete_prefix(store: BucketStore, root: Path) -> None:
    for key in ["logs/a/1", "logs/a/2", "logs/b", "logsx", "other"]:
        store.put("del", key, b"x")
    assert store.delete_prefix("del", "logs/a/") == 2
    assert [o.key for o in store.list("del")] == ["logs/b", "logsx", "other"]
    assert not (root / "del/logs/a").exists()
    assert not (root / "del" / META_DIR / "logs/a").exists()
    assert store.delete_prefix("del", "logs") == 2
    assert store.delete_prefix("del", "nothing") == 0
    assert store.delete_prefix("del", "") == 1
    assert store.list("del") == []
