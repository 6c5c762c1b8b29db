"""Upload -> thumbnail: an S3-style event for each new image in `uploads`; a 64x64 thumbnail of
it goes to the `thumbnails` bucket under the same key.

Written as a Lambda handler would be; the buckets are the server's local ones, found through
THINGCORE_BUCKETS_DIR, which thingcore sets in every function's environment.
"""

import io
import os
from pathlib import Path
from urllib.parse import unquote_plus

from PIL import Image

from rules.local.buckets import BucketStore

SIZE = (64, 64)
BUCKETS = BucketStore(Path(os.environ["THINGCORE_BUCKETS_DIR"]))


def handler(event, context):
    made = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])  # URL-encoded, as S3 sends it
        body, _ = BUCKETS.get(bucket, key)
        image = Image.open(io.BytesIO(body))
        image.thumbnail(SIZE)
        out = io.BytesIO()
        image.save(out, format="PNG")
        # The same key again after a retry writes the same object: handling twice is harmless.
        BUCKETS.put(
            "thumbnails",
            key,
            out.getvalue(),
            content_type="image/png",
            metadata={"source": f"{bucket}/{key}", "size": "x".join(map(str, image.size))},
        )
        made.append(key)
    return {"thumbnails": made}
