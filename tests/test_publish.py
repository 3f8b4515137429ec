"""`publish` against a real moto S3 server on 127.0.0.1: checksums, no duplicates, faults, the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from tasks.config import StorageConfig
from tasks.publish import PublishError, plan_publish, publish
from tasks.storage import StorageError, StorageUnreachableError
from tests.moto_s3 import MotoServer

BUCKET = "artifacts"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(files: dict[str, Path]) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every local file, to prove publishing never touches them."""
    return {name: (sha256(path), os.stat(path).st_mtime_ns) for name, path in files.items()}


def make_artifacts(root: Path) -> dict[str, Path]:
    files = {
        "models/finetuned.pt": os.urandom(300_000),
        "reports/compare.md": b"| model | mAP50 |\n|---|---|\n| finetuned | 0.89 |\n",
        "metrics/val.json": json.dumps({"finetuned": {"map50": 0.89}}).encode(),
        "data/crops/index.csv": b"crop,frame,colour\n0001.jpg,3,red\n",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return {name: root / name for name in files}


def storage(server: MotoServer, **changes) -> StorageConfig:
    return StorageConfig(endpoint_url=server.endpoint, bucket=BUCKET, prefix="team/lw", **changes)


def versions(server: MotoServer) -> dict[str, int]:
    """How many versions of each key the (versioned) bucket holds."""
    listing = server.client().list_object_versions(Bucket=BUCKET).get("Versions", [])
    counts: dict[str, int] = {}
    for version in listing:
        counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


@pytest.fixture
def bucket(s3_server: MotoServer) -> MotoServer:
    """The server with a versioned bucket: every upload leaves a version, so duplicates would show."""
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return s3_server


def test_publish_uploads_with_checksums_then_manifest_and_a_rerun_uploads_nothing(bucket, tmp_path):
    files = make_artifacts(tmp_path)
    before = snapshot(files)
    result = publish(storage(bucket), files)
    assert sorted(result.uploaded) == sorted(files) and result.skipped == []

    client = bucket.client()
    for name, path in files.items():
        key = f"team/lw/publish/{name}"
        head = client.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        assert head["Metadata"]["sha256"] == sha256(path)
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()
        assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == path.read_bytes()
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key="team/lw/publish/manifest.json")["Body"].read())
    assert manifest == result.manifest
    assert {name: entry["sha256"] for name, entry in manifest["files"].items()} == {
        name: sha256(path) for name, path in files.items()
    }

    again = publish(storage(bucket), files)
    assert again.uploaded == [] and sorted(again.skipped) == sorted(files)
    assert set(versions(bucket).values()) == {1} and len(versions(bucket)) == len(files) + 1  # + manifest
    assert snapshot(files) == before

    (tmp_path / "reports" / "compare.md").write_text("changed\n")
    changed = publish(storage(bucket), files)
    assert changed.uploaded == ["reports/compare.md"]
    assert versions(bucket)["team/lw/publish/reports/compare.md"] == 2
    assert versions(bucket)["team/lw/publish/manifest.json"] == 2  # the manifest lists the new sha256


def test_files_larger_than_multipart_mb_go_up_in_parts(bucket, tmp_path):
    files = make_artifacts(tmp_path)
    files["models/large.pt"] = tmp_path / "models" / "large.pt"
    files["models/large.pt"].write_bytes(os.urandom(12 << 20))
    before = snapshot(files)
    cfg = storage(bucket, multipart_mb=5)
    assert sorted(publish(cfg, files).uploaded) == sorted(files)

    client = bucket.client()
    key = "team/lw/publish/models/large.pt"
    head = client.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of 5 + 5 + 2 MiB
    assert head["Metadata"]["sha256"] == sha256(files["models/large.pt"])
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == files["models/large.pt"].read_bytes()
    small = client.head_object(Bucket=BUCKET, Key="team/lw/publish/models/finetuned.pt")
    assert "-" not in small["ETag"]  # below the threshold: one PUT

    again = publish(cfg, files)
    assert again.uploaded == [] and sorted(again.skipped) == sorted(files)
    assert versions(bucket)[key] == 1 and snapshot(files) == before


def test_missing_local_file_fails_before_any_upload(bucket, tmp_path):
    files = make_artifacts(tmp_path)
    files["data/predictions.csv"] = tmp_path / "data" / "predictions.csv"
    with pytest.raises(PublishError, match=r"data/predictions\.csv: file not found"):
        publish(storage(bucket), files)
    assert versions(bucket) == {}


def test_missing_bucket_and_missing_credentials_name_the_endpoint_and_bucket(s3_server, tmp_path, monkeypatch):
    files = make_artifacts(tmp_path)
    with pytest.raises(StorageError, match=rf"bucket 'artifacts' at {s3_server.endpoint} does not exist"):
        publish(storage(s3_server), files)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match=rf"no AWS credentials for bucket 'artifacts' at {s3_server.endpoint}"):
        publish(storage(s3_server), files)


def test_server_stopped_mid_publish_is_a_clear_error_and_local_files_are_untouched(s3_server, tmp_path):
    s3_server.client().create_bucket(Bucket=BUCKET)
    files = make_artifacts(tmp_path)
    before = snapshot(files)
    with pytest.raises(StorageUnreachableError) as error:
        publish(storage(s3_server, max_attempts=2), files, on_uploaded=lambda item: s3_server.stop())
    assert f"bucket 'artifacts' at {s3_server.endpoint}" in str(error.value)
    assert "S3 endpoint unreachable" in str(error.value) and "1 of 4 files are in place" in str(error.value)
    assert snapshot(files) == before


def test_rerun_after_a_hung_server_returns_completes_without_duplicates(bucket, tmp_path):
    """The server freezes after the first upload (SIGSTOP keeps its objects); the rerun sends only the rest."""
    files = make_artifacts(tmp_path)
    before = snapshot(files)
    cfg = storage(bucket, max_attempts=2, read_timeout=1, connect_timeout=1)
    uploaded_before_fault = []

    def freeze_after_first(item) -> None:
        uploaded_before_fault.append(item.name)
        bucket.freeze()

    with pytest.raises(StorageUnreachableError, match=rf"bucket 'artifacts' at {bucket.endpoint}"):
        publish(cfg, files, on_uploaded=freeze_after_first)
    assert snapshot(files) == before
    bucket.resume()
    assert "team/lw/publish/manifest.json" not in versions(bucket)  # never a manifest for a partial publish

    rerun = publish(cfg, files)
    assert rerun.skipped == uploaded_before_fault and len(uploaded_before_fault) == 1
    assert sorted(rerun.uploaded + rerun.skipped) == sorted(files)
    expected_keys = {f"team/lw/publish/{name}" for name in [*files, "manifest.json"]}
    assert versions(bucket) == dict.fromkeys(expected_keys, 1)  # every object exactly once
    manifest = json.loads(bucket.client().get_object(Bucket=BUCKET, Key="team/lw/publish/manifest.json")["Body"].read())
    assert set(manifest["files"]) == set(files)
    assert snapshot(files) == before


def test_cli_publishes_what_exists_and_lists_what_is_missing(bucket, tmp_path, monkeypatch):
    make_artifacts(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"storage": {"bucket": BUCKET, "prefix": "cli"}}))
    monkeypatch.setenv("LIGHTWEIGHT_S3_ENDPOINT_URL", bucket.endpoint)
    runner = CliRunner()

    dry = runner.invoke(app, ["publish", "--root", str(tmp_path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would publish models/finetuned.pt -> s3://artifacts/cli/publish/models/finetuned.pt" in dry.output
    assert versions(bucket) == {}

    done = runner.invoke(app, ["publish", "--root", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert "not published (nothing matches): data/predictions.csv" in done.output
    assert "4 uploaded, 0 already there" in done.output
    assert set(versions(bucket)) == {
        f"cli/publish/{name}"
        for name in [
            "models/finetuned.pt",
            "reports/compare.md",
            "metrics/val.json",
            "data/crops/index.csv",
            "manifest.json",
        ]
    }

    (tmp_path / "models" / "finetuned.pt").unlink()
    missing = runner.invoke(app, ["publish", "--root", str(tmp_path)])
    assert missing.exit_code == 2 and "models/finetuned.pt not found: run the pipeline first" in missing.output


def test_unusable_names_are_refused_without_touching_the_network(tmp_path):
    files = make_artifacts(tmp_path)
    cfg = StorageConfig(endpoint_url="http://127.0.0.1:9", bucket=BUCKET)  # nothing listens there
    with pytest.raises(PublishError, match=r"\.\./escape\.pt: not a usable object name"):
        publish(cfg, {"../escape.pt": files["models/finetuned.pt"]})
    other = tmp_path / "elsewhere" / "finetuned.pt"
    other.parent.mkdir()
    other.write_bytes(b"other")
    with pytest.raises(PublishError, match=r"would both be published as 'finetuned\.pt'"):
        publish(cfg, [files["models/finetuned.pt"].resolve(), other.resolve()])
    planned = plan_publish(cfg, files)
    assert {p.key: p.sha256 for p in planned} == {f"lightweight/publish/{n}": sha256(p) for n, p in files.items()}
