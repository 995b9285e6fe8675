"""An S3-compatible store for tests: moto's server on a free 127.0.0.1 port, holding the bundled
photos, a synthetic video, a sidecar, one object the reader may not read and one outside its prefix.

    with s3store.moto_bucket(tmp_dir, photo_dir) as store: ...   # store["endpoint"], ["objects"], ...

moto runs in this process (`ThreadedMotoServer`) with IAM enforced once the bucket is set up:
PixQL reads with the keys of a user whose policy denies one prefix, so a denied object is a
real 403 from the store.  No request ever leaves loopback: the endpoint is set, the instance
metadata probe is off, and AWS config files point at empty files.  The credentials and endpoint
are put in os.environ while the store runs (processes started meanwhile, such as Ray nodes,
inherit them as a cluster node inherits its machine's credentials) and restored after.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import pytest

from apiserver import free_port

BUCKET = "pixql-media"
PREFIX = f"s3://{BUCKET}/photos/"
CLIP_SECONDS = 3


@contextlib.contextmanager
def moto_bucket(tmp_dir: Path, photo_dir: Path):
    """moto on a free loopback port holding the photos, a video, a sidecar and a denied object."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer
    import requests
    from videogen import make_video

    saved = {k: os.environ.get(k) for k in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
        "AWS_EC2_METADATA_DISABLED", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE",
        "AWS_ENDPOINT_URL", "PIXQL_S3_ENDPOINT_URL")}
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    endpoint = f"http://127.0.0.1:{port}"
    server.start()
    try:
        empty = tmp_dir / "aws-empty"
        empty.write_text("")
        os.environ.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(empty),
                          AWS_SHARED_CREDENTIALS_FILE=str(empty), AWS_REGION="us-east-1")
        for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
            os.environ.pop(k, None)
        admin = dict(endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1")
        s3, iam = boto3.client("s3", **admin), boto3.client("iam", **admin)
        s3.create_bucket(Bucket=BUCKET)
        objects = {}

        def put(key: str, data: bytes):
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            objects[key] = data

        photos = sorted(p for p in photo_dir.iterdir() if p.is_file())
        for p in photos:
            put(f"photos/{p.name}", p.read_bytes())
        video = make_video(tmp_dir / "clip.mp4", seconds=CLIP_SECONDS, rate=10)
        put("photos/clips/clip.mp4", video.read_bytes())
        put("photos/chelsea.png.json", json.dumps({"source": "bucket", "rating": 5}).encode())
        put("photos/secret/denied.png", photos[0].read_bytes())
        put("elsewhere/other.png", photos[0].read_bytes())
        iam.create_user(UserName="pixql-reader")
        iam.put_user_policy(UserName="pixql-reader", PolicyName="read", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]},
                {"Effect": "Deny", "Action": "s3:GetObject", "Resource": [f"arn:aws:s3:::{BUCKET}/photos/secret/*"]},
            ]}))
        key = iam.create_access_key(UserName="pixql-reader")["AccessKey"]
        # From here on moto checks every request's signature and the user's policy.
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0").raise_for_status()
        os.environ.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"],
                          PIXQL_S3_ENDPOINT_URL=endpoint)
        yield {"endpoint": endpoint, "objects": objects, "photos": photos, "video": video}
    finally:
        _stop(server, endpoint, saved)


def _stop(server, endpoint: str, saved: dict) -> None:
    import requests

    # moto's backends and auth switch are process-wide: leave them as other tests expect.
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf")
    requests.post(f"{endpoint}/moto-api/reset")
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
