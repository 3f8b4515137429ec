"""Publishing the final artifacts to S3 with boto3: content checksums, no duplicate uploads, manifest last.

Every file goes to `<prefix>/publish/<name>` with its sha256 in the object metadata and as the S3
SHA256 checksum of the upload (files above `storage.multipart_mb` go up in parts, each part checked by
S3 against its own SHA256). A file whose object already carries the same sha256 is skipped, so a
rerun after a failure uploads only what is missing. `<prefix>/publish/manifest.json` (name -> key,
sha256, size) is written last: a reader who finds it finds every object it lists. Local files are only
ever opened for reading.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import StorageConfig
from tasks.digest import sha256_file
from tasks.storage import StorageError, StorageUnreachableError, check_bucket, s3_client, storage_errors, where

__all__ = [
    "MANIFEST_NAME",
    "Planned",
    "PublishError",
    "PublishResult",
    "collect_artifacts",
    "plan_publish",
    "publish",
    "publish_task",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


class PublishError(StorageError):
    """Local inputs that cannot be published (missing files, unsafe names); nothing was uploaded."""


@dataclass(frozen=True)
class Planned:
    name: str  # relative name, e.g. models/finetuned.pt
    path: Path
    key: str  # S3 key: <prefix>/publish/<name>
    sha256: str  # hex
    size: int


@dataclass
class PublishResult:
    bucket: str
    endpoint: str
    manifest_key: str
    manifest: dict[str, Any]
    uploaded: list[str] = field(default_factory=list)  # names sent this run
    skipped: list[str] = field(default_factory=list)  # names already there with the same sha256


def _named(files: Mapping[str, Path] | Sequence[Path]) -> dict[str, Path]:
    if isinstance(files, Mapping):
        return {str(name): Path(path) for name, path in files.items()}
    named: dict[str, Path] = {}
    for path in map(Path, files):
        name = path.name if path.is_absolute() else path.as_posix()  # absolute paths publish under their file name
        if name in named and named[name] != path:
            raise PublishError(f"{named[name]} and {path} would both be published as {name!r}; name them in a dict")
        named[name] = path
    return named


def _publish_prefix(cfg: StorageConfig) -> str:
    return f"{cfg.prefix}/publish" if cfg.prefix else "publish"


def plan_publish(cfg: StorageConfig, files: Mapping[str, Path] | Sequence[Path]) -> list[Planned]:
    """Check every local file and hash it, without touching the network; PublishError names all problems."""
    named = _named(files)
    problems = []
    for name, path in named.items():
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts or name == MANIFEST_NAME:
            problems.append(f"{name}: not a usable object name (relative, no '..', not {MANIFEST_NAME})")
        elif not path.is_file():
            problems.append(f"{name}: file not found: {path}")
    if problems:
        raise PublishError("nothing published, local files missing or unusable:\n  " + "\n  ".join(problems))
    prefix = _publish_prefix(cfg)
    return [
        Planned(name, path, f"{prefix}/{name}", sha256_file(path), path.stat().st_size)
        for name, path in sorted(named.items())
    ]


def _remote_sha256(client: Any, bucket: str, key: str) -> str | None:
    """The sha256 recorded on an existing object, or None when there is no such object."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if str(error.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head.get("Metadata", {}).get("sha256")


def _discard_changed(client: Any, bucket: str, key: str) -> NoReturn:
    client.delete_object(Bucket=bucket, Key=key)  # never leave an object whose metadata lies
    raise StorageError(f"{key}: the local file changed while it was uploaded; publish again")


def _put(client: Any, bucket: str, key: str, body: Any, sha256: str) -> None:
    response = client.put_object(
        Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256", Metadata={"sha256": sha256}
    )
    sent = response.get("ChecksumSHA256")  # what botocore computed over the bytes it actually sent
    if sent is not None and sent != base64.b64encode(bytes.fromhex(sha256)).decode():
        _discard_changed(client, bucket, key)


def _put_in_parts(client: Any, bucket: str, item: Planned, part_bytes: int) -> None:
    """A multipart upload: S3 checks each part's SHA256; hashing the file again catches edits made meanwhile."""
    client.upload_file(
        str(item.path),
        bucket,
        item.key,
        ExtraArgs={"ChecksumAlgorithm": "SHA256", "Metadata": {"sha256": item.sha256}},
        Config=TransferConfig(multipart_threshold=part_bytes, multipart_chunksize=part_bytes, use_threads=False),
    )
    if sha256_file(item.path) != item.sha256:
        _discard_changed(client, bucket, item.key)


def _send_file(client: Any, bucket: str, item: Planned, part_bytes: int) -> None:
    """One PUT whose checksum is compared with the plan, or parts when the file is larger than `part_bytes`."""
    if item.size > part_bytes:
        _put_in_parts(client, bucket, item, part_bytes)
        return
    with item.path.open("rb") as body:
        _put(client, bucket, item.key, body, item.sha256)


def _upload_if_changed(client: Any, bucket: str, key: str, sha256: str, send: Callable[[], None]) -> bool:
    """Upload unless the object already carries this sha256; True when something was sent."""
    with storage_errors(client, bucket, f"publishing {key}"):
        if _remote_sha256(client, bucket, key) == sha256:
            return False
        send()
    return True


def publish(
    cfg: StorageConfig,
    files: Mapping[str, Path] | Sequence[Path],
    *,
    client: Any = None,
    on_uploaded: Callable[[Planned], None] | None = None,
) -> PublishResult:
    """Upload `files` (name -> path, or paths) under `<prefix>/publish/`, then the manifest; skip what is there."""
    planned = plan_publish(cfg, files)  # every local problem is reported before any request
    client = client if client is not None else s3_client(cfg)
    check_bucket(client, cfg.bucket)
    manifest = {"files": {p.name: {"key": p.key, "sha256": p.sha256, "size": p.size} for p in planned}}
    result = PublishResult(cfg.bucket, client.meta.endpoint_url, f"{_publish_prefix(cfg)}/{MANIFEST_NAME}", manifest)
    part_bytes = cfg.multipart_mb << 20
    try:
        for item in planned:
            send = partial(_send_file, client, cfg.bucket, item, part_bytes)
            if _upload_if_changed(client, cfg.bucket, item.key, item.sha256, send):
                log.info("uploaded %s -> s3://%s/%s (%d bytes)", item.path, cfg.bucket, item.key, item.size)
                result.uploaded.append(item.name)
                if on_uploaded is not None:
                    on_uploaded(item)
            else:
                log.info("unchanged %s (s3://%s/%s has sha256 %s)", item.name, cfg.bucket, item.key, item.sha256[:12])
                result.skipped.append(item.name)
        body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        sha = hashlib.sha256(body).hexdigest()
        send_manifest = partial(_put, client, cfg.bucket, result.manifest_key, BytesIO(body), sha)
        if _upload_if_changed(client, cfg.bucket, result.manifest_key, sha, send_manifest):
            log.info("wrote manifest s3://%s/%s (%d files)", cfg.bucket, result.manifest_key, len(planned))
    except StorageUnreachableError as error:
        done = len(result.uploaded) + len(result.skipped)
        raise StorageUnreachableError(
            f"{error}\n  {done} of {len(planned)} files are in place, manifest not updated; local files are unchanged. "
            "Run publish again once the endpoint answers: files already there are skipped."
        ) from error
    log.info(
        "published %d files to %s: %d uploaded, %d unchanged",
        len(planned),
        where(client, cfg.bucket),
        len(result.uploaded),
        len(result.skipped),
    )
    return result


def collect_artifacts(root: Path, patterns: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    """Files matching `patterns` under `root` (name -> path) and the patterns that matched nothing."""
    found: dict[str, Path] = {}
    missing = []
    for pattern in patterns:
        matches = sorted(p for p in root.glob(pattern) if p.is_file() and not p.name.startswith("."))
        if not matches:
            missing.append(pattern)
        for path in matches:
            found[path.relative_to(root).as_posix()] = path
    return found, missing


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry the whole publish only when S3 did not answer; missing files or buckets will not fix themselves."""
    try:
        state.result()
    except StorageUnreachableError:
        return True
    except Exception:
        return False
    return False


@task(
    name="publish",
    cache_policy=NO_CACHE,  # it changes the outside world; idempotent anyway: unchanged objects are skipped
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=_worth_retrying,
)
def publish_task(cfg: StorageConfig, files: dict[str, Path]) -> dict[str, Any]:
    """Publish the final artifacts; returns the manifest with what was uploaded and skipped."""
    result = publish(cfg, files)
    return {
        "manifest_key": result.manifest_key,
        **result.manifest,
        "uploaded": result.uploaded,
        "skipped": result.skipped,
    }
