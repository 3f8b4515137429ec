"""The publish Prefect task: retried when S3 does not answer, not when the bucket is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from tasks.config import StorageConfig
from tasks.publish import publish_task
from tests.flows.harness import local_prefect
from tests.moto_s3 import MotoServer

pytestmark = pytest.mark.slow


@flow
def publish_flow(cfg: StorageConfig, files: dict[str, Path]) -> dict:
    return publish_task.with_options(retry_delay_seconds=0)(cfg, files)


def publish_runs(cfg: StorageConfig, files: dict[str, Path]) -> tuple[str, int]:
    """The flow's final state name and how many times the publish task ran."""
    state = publish_flow(cfg, files, return_state=True)
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return state.name, runs[0].run_count


def test_publish_task_retries_only_when_the_endpoint_does_not_answer(s3_server: MotoServer, tmp_path):
    weights = tmp_path / "finetuned.pt"
    weights.write_bytes(b"weights")
    files = {"models/finetuned.pt": weights}
    cfg = StorageConfig(endpoint_url=s3_server.endpoint, bucket="artifacts", max_attempts=1)
    with local_prefect():
        assert publish_runs(cfg, files) == ("Failed", 1)  # missing bucket: retrying cannot help
        s3_server.client().create_bucket(Bucket="artifacts")
        assert publish_runs(cfg, files) == ("Completed", 1)
        s3_server.stop()
        assert publish_runs(cfg, files) == ("Failed", 3)  # unreachable: the first run and two retries
