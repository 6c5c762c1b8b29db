"""``thingcore buckets``: the local buckets that rules' bucket (and local ``s3``) actions write.

The objects are plain files; these commands add what a file browser cannot show (content type,
metadata, the delivery that wrote an object) and delete objects together with their metadata.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from rules.local.buckets import BucketInfo, BucketStore, ObjectInfo
from thingcore.cli.common import (
    DataDir,
    Json,
    iso,
    listing,
    print_json,
    settings_for,
    stdout_console,
    subtyper,
)
from thingcore.errors import ThingcoreError

app = subtyper(
    "Local buckets: folders of objects that rules write to, like S3.\n\n"
    "An object is the plain file `<data dir>/buckets/<bucket>/<key>` (the setting "
    "`rules.local.buckets_dir` moves the folder); its content type and metadata are kept beside "
    "it in `<bucket>/.thingcore-meta/`. A rule's bucket action creates a bucket on its first "
    "write.\n\n"
    "Example: `thingcore buckets ls telemetry/sensors/`"
)

Bucket = Annotated[str, typer.Argument(help="The bucket's name.", show_default=False)]
Key = Annotated[str, typer.Argument(help="The object's key.", show_default=False)]
Limit = Annotated[int, typer.Option("--limit", min=1, max=100_000, help="Show at most this many.")]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
"""Characters that make a body binary for the terminal (tab, newlines and form feed do not)."""


def open_store(data_dir: Path | None) -> BucketStore:
    settings = settings_for(data_dir)
    return BucketStore.from_settings(settings.rules.local, settings.data_dir)


def split_target(target: str) -> tuple[str, str]:
    """``BUCKET[/PREFIX]`` as (bucket, prefix)."""
    bucket, _, prefix = target.partition("/")
    return bucket, prefix


def text_of(body: bytes) -> str | None:
    """``body`` as text if it is UTF-8 without control characters, else None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def write_stdout(data: bytes) -> None:
    """Raw bytes on standard output, after anything printed before."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


# -- renderers -----------------------------------------------------------------------------------


def render_buckets(items: list[BucketInfo], more: bool) -> RenderableType:
    caption = f"Showing the first {len(items)}: --limit shows more." if more else None
    return listing(
        ["Bucket", "Objects", "Size"],
        ([b.name, str(b.objects), str(b.size)] for b in items),
        caption=caption,
    )


def render_objects(items: list[ObjectInfo], more: bool) -> RenderableType:
    caption = f"Showing the first {len(items)}: --limit shows more." if more else None
    return listing(
        ["Key", "Size", "Content type", "Last modified"],
        ([o.key, str(o.size), o.content_type, iso(o.last_modified)] for o in items),
        fold=["Key"],
        caption=caption,
    )


def where(bucket: str, prefix: str) -> str:
    return f"under {prefix!r} in bucket {bucket}" if prefix else f"in bucket {bucket}"


# -- commands ------------------------------------------------------------------------------------


def ls(
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="[BUCKET[/PREFIX]]",
            help="List this bucket's objects (only keys beginning with PREFIX); "
            "without it, list the buckets.",
            show_default=False,
        ),
    ] = None,
    limit: Limit = 1000,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """List the buckets with their object count and size, or the objects of one bucket by key.

    Objects are sorted by key, as S3's ListObjectsV2 sorts them. `--json` prints
    `{"Buckets": [...]}`, or for a bucket `{"Name", "Prefix", "KeyCount", "IsTruncated",
    "Contents": [...]}` with each object's `Key`, `Size`, `ContentType`, `Metadata`, `ETag`,
    `LastModified` and `MessageId`.

    Example: `thingcore buckets ls`

    Example: `thingcore buckets ls telemetry/sensors/ --limit 20 --json`
    """
    store = open_store(data_dir)
    if target is None:
        every = store.buckets()
        shown, more = every[:limit], len(every) > limit
        if as_json:
            print_json({"Buckets": [b.as_dict() for b in shown], "IsTruncated": more})
        elif not shown:
            stdout_console().print(
                f"No buckets in {store.root}: a rule's bucket action creates one on its first "
                "write."
            )
        else:
            stdout_console().print(render_buckets(shown, more))
        return
    bucket, prefix = split_target(target)
    found = store.list(bucket, prefix, limit=limit + 1)
    objects, more = found[:limit], len(found) > limit
    if as_json:
        print_json(
            {
                "Name": bucket,
                "Prefix": prefix,
                "KeyCount": len(objects),
                "IsTruncated": more,
                "Contents": [o.as_dict() for o in objects],
            }
        )
    elif not objects:
        stdout_console().print(f"No objects {where(bucket, prefix)}.")
    else:
        stdout_console().print(render_objects(objects, more))


def get(
    bucket: Bucket,
    key: Key,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Write the body to FILE (`-o -`: to standard output, even when binary).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Print an object's body, or write it to a file.

    Text (UTF-8 without control characters) is printed as it is; a binary body is not printed
    to a terminal: give `--out FILE`, or `-o -` to write it to standard output anyway. `--json`
    prints what S3's HeadObject says instead of the body: size, content type, metadata, ETag,
    last modified, and the id of the delivery that wrote it.

    Example: `thingcore buckets get telemetry sensors/dev-1/1714560000.json`

    Example: `thingcore buckets get images cam-1/latest.jpg --out latest.jpg`
    """
    if out == "-" and as_json:
        raise ThingcoreError("give --json or -o -, not both: they would share standard output")
    body, info = open_store(data_dir).get(bucket, key)
    if out == "-":
        write_stdout(body)
    elif out is not None:
        try:
            Path(out).write_bytes(body)
        except OSError as exc:
            raise ThingcoreError(f"cannot write {out}: {exc.strerror or exc}") from None
        if as_json:
            print_json(info.as_dict())
        else:
            stdout_console().print(f"Wrote {info.size} bytes of {bucket}/{key} to {out}")
    elif as_json:
        print_json(info.as_dict())
    else:
        terminal = stdout_is_terminal()
        text = text_of(body)
        if text is None and terminal:
            raise ThingcoreError(
                f"{bucket}/{key} is binary ({info.size} bytes, {info.content_type}) and is not "
                "printed to a terminal: give --out FILE, or -o - to write it to standard output"
            )
        if terminal and text and not text.endswith("\n"):
            body += b"\n"  # so the prompt starts on its own line
        write_stdout(body)


def rm(
    bucket: Bucket,
    key: Annotated[
        str | None,
        typer.Argument(help="The key of the one object to delete.", show_default=False),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            help="Delete every object whose key begins with this ('' for all of them).",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete with --prefix without asking.")
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Delete an object, or every object under a prefix (after a confirmation).

    An object's metadata goes with it, and folders left empty are removed. `--json` prints
    `{"Bucket", "Key" or "Prefix", "Deleted": N}`.

    Example: `thingcore buckets rm telemetry sensors/dev-1/1714560000.json`

    Example: `thingcore buckets rm telemetry --prefix sensors/dev-1/ --yes`
    """
    if (key is None) == (prefix is None):
        raise ThingcoreError("give a KEY to delete one object, or --prefix P for many (not both)")
    store = open_store(data_dir)
    if key is not None:
        store.head(bucket, key)  # says which of the bucket and the key does not exist
        deleted = int(store.delete(bucket, key))
        report: dict[str, Any] = {"Bucket": bucket, "Key": key, "Deleted": deleted}
        message = f"Deleted {bucket}/{key}" if deleted else f"{bucket}/{key} was already gone"
    else:
        prefix = prefix or ""  # given (checked above): this only tells mypy
        count = len(store.list(bucket, prefix))
        if count and not yes:
            confirm(f"Delete {count} object(s) {where(bucket, prefix)}?")
        deleted = store.delete_prefix(bucket, prefix) if count else 0
        report = {"Bucket": bucket, "Prefix": prefix, "Deleted": deleted}
        message = (
            f"Deleted {deleted} object(s) {where(bucket, prefix)}"
            if count
            else f"No objects {where(bucket, prefix)}: nothing deleted"
        )
    if as_json:
        print_json(report)
    else:
        stdout_console().print(message)


def confirm(question: str) -> None:
    """Ask on standard error (standard output may be JSON); not confirmed is an error."""
    try:
        confirmed = typer.confirm(question, err=True)
    except typer.Abort:
        confirmed = False  # no answer: standard input ended
    if not confirmed:
        raise ThingcoreError("nothing deleted: not confirmed (--yes deletes without asking)")


app.command("ls")(ls)
app.command("get")(get)
app.command("rm")(rm)
