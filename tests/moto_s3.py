"""A real S3-compatible HTTP server for tests: moto in server mode, a subprocess on 127.0.0.1.

A subprocess (not moto's in-process mock) so tests talk HTTP like production does and can stop,
freeze (SIGSTOP) and resume it. Its state lives in memory: a restarted server starts empty.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["MotoServer", "aws_env", "s3_server"]

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MotoServer:
    """`moto_server -H 127.0.0.1 -p PORT` that a test can start, stop, freeze and resume."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto_server not ready on {self.endpoint} after {timeout} s")

    def stop(self) -> None:
        """Terminate the server (its objects are lost)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers, like a hung server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials for moto, and nothing from the developer's own AWS setup."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "LIGHTWEIGHT_S3_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups (no network here)


@pytest.fixture
def s3_server(aws_env: None, tmp_path: Path) -> Iterator[MotoServer]:
    """A fresh moto S3 server on 127.0.0.1, stopped at teardown."""
    server = MotoServer(tmp_path / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
