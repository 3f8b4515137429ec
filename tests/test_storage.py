"""Storage settings, and the DVC remote: `dvc push`, then `dvc pull` in a clean clone, via a real moto server."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from configobj import ConfigObj

from tasks.config import ConfigError, StorageConfig, load_params
from tests.conftest import REPO
from tests.moto_s3 import MotoServer

BIN = Path(sys.executable).parent


def sh(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    result = subprocess.run(args, cwd=cwd, env=environ, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def tree_hashes(root: Path, *folders: str) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


def test_environment_overrides_the_file_and_is_validated():
    cfg = StorageConfig()
    env = {"LIGHTWEIGHT_S3_BUCKET": "team-bucket", "LIGHTWEIGHT_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}
    moved = cfg.with_environment(env)
    assert (moved.bucket, moved.endpoint_url, moved.prefix) == ("team-bucket", "http://127.0.0.1:9000", cfg.prefix)
    assert cfg.with_environment({}) is cfg
    with pytest.raises(ConfigError, match=r"LIGHTWEIGHT_S3_BUCKET=Not_A_Bucket.*\n  bucket: String should match"):
        cfg.with_environment({"LIGHTWEIGHT_S3_BUCKET": "Not_A_Bucket"})


def test_bad_storage_params_are_named(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("storage:\n  endpoint_url: localhost:9000\n  prefix: /lw/\n  secret_access_key: x\n")
    with pytest.raises(ConfigError) as error:
        load_params(params)
    message = str(error.value)
    assert "storage.secret_access_key: unknown key" in message  # credentials have no place in params.yaml
    assert "storage.prefix" in message
    params.write_text("storage:\n  endpoint_url: localhost:9000\n")
    with pytest.raises(ConfigError, match=r"storage: endpoint_url: expected http://"):
        load_params(params)


def test_project_dvc_remote_matches_the_storage_params_and_holds_no_credentials():
    config = ConfigObj(str(REPO / ".dvc" / "config"))
    storage = load_params(REPO / "params.yaml").storage
    remote = config['remote "storage"']
    assert config["core"]["remote"] == "storage"
    assert remote["url"] == f"s3://{storage.bucket}/{storage.prefix}/dvc"
    assert not {"access_key_id", "secret_access_key", "session_token", "credentialpath"} & set(remote)


@pytest.mark.slow
def test_dvc_push_then_pull_into_a_clean_clone_restores_identical_outputs(s3_server: MotoServer, tmp_path):
    storage = load_params(REPO / "params.yaml").storage
    s3_server.client().create_bucket(Bucket=storage.bucket)
    origin = tmp_path / "origin"
    origin.mkdir()
    sh(origin, "git", "init", "-q")
    sh(origin, "dvc", "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", origin / ".dvc" / "config")  # the project's own remote `storage`
    (origin / "models").mkdir()
    (origin / "models" / "weights.pt").write_bytes(os.urandom(400_000))
    crops = origin / "data" / "crops"
    crops.mkdir(parents=True)
    for index in range(5):
        (crops / f"{index:04d}.jpg").write_bytes(os.urandom(3_000 + index))
    sh(origin, "dvc", "add", "-q", "models/weights.pt", "data/crops")
    index_script = "import pathlib; print('\\n'.join(sorted(p.name for p in pathlib.Path('data/crops').iterdir())))"
    sh(
        origin,
        "dvc",
        "stage",
        "add",
        "-q",
        "-n",
        "crops_index",
        "-d",
        "data/crops",
        "-o",
        "reports/index.txt",
        f'mkdir -p reports && python -c "{index_script}" > reports/index.txt',
    )
    sh(origin, "dvc", "repro", "-q")
    sh(origin, "dvc", "remote", "modify", "--local", "storage", "endpointurl", s3_server.endpoint)
    sh(origin, "git", "add", "-A")
    sh(origin, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data")
    assert "8 files pushed" in sh(origin, "dvc", "push")  # weights, 5 crops + their .dir listing, index.txt
    stored = s3_server.client().list_objects_v2(Bucket=storage.bucket, Prefix=f"{storage.prefix}/dvc/files/md5/")
    assert stored["KeyCount"] == 8
    assert "config.local" not in sh(origin, "git", "ls-files", ".dvc")  # the endpoint stays out of git
    expected = tree_hashes(origin, "models", "data", "reports")

    by_local_config = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(origin), str(by_local_config))
    assert not (by_local_config / "models" / "weights.pt").exists()
    sh(by_local_config, "dvc", "remote", "modify", "--local", "storage", "endpointurl", s3_server.endpoint)
    sh(by_local_config, "dvc", "pull")
    assert tree_hashes(by_local_config, "models", "data", "reports") == expected
    assert "up to date" in sh(by_local_config, "dvc", "status")

    by_environment = tmp_path / "clone-env"
    sh(tmp_path, "git", "clone", "-q", str(origin), str(by_environment))
    sh(by_environment, "dvc", "pull", env={"AWS_ENDPOINT_URL_S3": s3_server.endpoint})
    assert tree_hashes(by_environment, "models", "data", "reports") == expected
