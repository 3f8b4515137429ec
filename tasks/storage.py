"""An S3 client built from the `storage:` params, with errors that name the endpoint and bucket.

Credentials are never read from params.yaml: boto3 finds them in the standard AWS chain
($AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY, $AWS_PROFILE and ~/.aws, instance roles).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError, PartialCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from tasks.config import StorageConfig
from tasks.errors import LightweightError

__all__ = ["StorageError", "StorageUnreachableError", "check_bucket", "s3_client", "storage_errors", "where"]


class StorageError(LightweightError, RuntimeError):
    """S3 cannot be used as configured; the message names the endpoint and the bucket."""


class StorageUnreachableError(StorageError):
    """The endpoint did not answer (after botocore's retries); running again later may succeed."""


def s3_client(cfg: StorageConfig) -> Any:
    """A boto3 S3 client: endpoint and region from `cfg` or the AWS chain, botocore's standard retries."""
    config = Config(
        retries={"max_attempts": cfg.max_attempts, "mode": "standard"},  # backoff with jitter on throttling/5xx/IO
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.read_timeout,
    )
    session = boto3.session.Session(region_name=cfg.region or None)
    # endpoint_url=None lets botocore apply $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL, then AWS itself.
    return session.client("s3", endpoint_url=cfg.endpoint_url or None, config=config)


def where(client: Any, bucket: str) -> str:
    """`bucket <name> at <endpoint>`, the endpoint as actually resolved (params, environment or AWS)."""
    return f"bucket {bucket!r} at {client.meta.endpoint_url}"


@contextmanager
def storage_errors(client: Any, bucket: str, doing: str) -> Iterator[None]:
    """Turn botocore's failures into a StorageError saying what was being done, where, and what to check."""
    place = where(client, bucket)
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as error:
        raise StorageError(
            f"{doing}: no AWS credentials for {place} ({error}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE / ~/.aws/credentials"
        ) from error
    except (BotoConnectionError, HTTPClientError) as error:
        raise StorageUnreachableError(f"{doing}: S3 endpoint unreachable, {place}: {error}") from error
    except S3UploadFailedError as error:  # what boto3's managed (multipart) uploads make of a ClientError
        raise StorageError(f"{doing}: {place}: {error}") from error
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket", "404"):
            raise StorageError(f"{doing}: {place} does not exist") from error
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise StorageError(f"{doing}: access denied to {place} ({code}); check the AWS credentials") from error
        raise StorageError(f"{doing}: {place}: {error}") from error


def check_bucket(client: Any, bucket: str) -> None:
    """Fail with a clear StorageError unless the bucket exists and the credentials can reach it."""
    with storage_errors(client, bucket, "checking the bucket"):
        client.head_bucket(Bucket=bucket)
