"""docker/seaweedfs-start.sh and docker/init.py against a real SeaweedFS.

The compose file starts SeaweedFS through seaweedfs-start.sh (credentials from the env
file), and its `migrate` service creates the bucket with init.py. Both run here on
127.0.0.1, with the `weed` binary of the test suite — the release the image pins.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import boto3
import pytest
import trio
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from cj.config import ToolSettings, load_settings
from tests.fixtures.seaweed import _free_ports, weed_binary
from tests.run.compose import DOCKER_DIR, parse_env_file

SCRIPT = DOCKER_DIR / "seaweedfs-start.sh"
KEY_VAR = "CJ_STORAGE_BACKENDS_RECORDINGS_ACCESS_KEY_ID"
SECRET_VAR = "CJ_STORAGE_BACKENDS_RECORDINGS_SECRET_ACCESS_KEY"


def load_init() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cj_docker_init", DOCKER_DIR / "init.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def started(
    workdir: Path, env_file: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """seaweedfs-start.sh on free loopback ports; yields the S3 endpoint URL and process."""
    names = ["s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer"]
    names.append("filer_grpc")
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CJ_")},
        KEY_VAR: env_file[KEY_VAR],
        SECRET_VAR: env_file[SECRET_VAR],
        "WEED": str(weed_binary()),
        "SEAWEEDFS_DIR": str(workdir / "data"),
        "SEAWEEDFS_IP": "127.0.0.1",
        "SEAWEEDFS_BIND": "127.0.0.1",
        "SEAWEEDFS_S3_PORT": str(ports["s3"]),
    }
    flags = [
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        f"-s3.port.grpc={ports['s3_grpc']}",  # else s3 port + 10000, maybe past 65535
        "-volume.preStopSeconds=0",  # the compose default (10 s) only slows the test down
        f"-filer.localSocket={workdir / 'filer.sock'}",
        f"-s3.localSocket={workdir / 's3.sock'}",
    ]
    with (workdir / "weed.log").open("wb") as log:
        process = subprocess.Popen(
            ["sh", str(SCRIPT), *flags],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{ports['s3']}", process
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # nothing to keep: skip weed's slow goodbye
        process.wait()


def client(endpoint: str, key: str, secret: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=BotoConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            connect_timeout=2,
            read_timeout=10,
        ),
    )


def wait_ready(
    endpoint: str, key: str, secret: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Until S3 answers a signed request (an external process: real sleeps)."""
    s3 = client(endpoint, key, secret)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(
                f"seaweedfs-start.sh exited {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            s3.list_buckets()  # type: ignore[attr-defined]
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"SeaweedFS did not start: {exc}\n{log.read_text()}") from exc
            time.sleep(0.2)


def test_seaweedfs_takes_its_credentials_from_the_env_file(tmp_path: Path) -> None:
    env_file = parse_env_file(DOCKER_DIR / "calljournal.env")
    key, secret = env_file[KEY_VAR], env_file[SECRET_VAR]
    with started(tmp_path, env_file) as (endpoint, process):
        wait_ready(endpoint, key, secret, process, tmp_path / "weed.log")
        # init.py (the migrate service) creates the env file's bucket, once; only the
        # endpoint differs from the compose deployment.
        env = {**env_file, "CJ_STORAGE_BACKENDS_RECORDINGS_ENDPOINT_URL": endpoint}
        storage = load_settings(ToolSettings, env=env).storage
        init = load_init()
        for _ in range(2):  # a second run finds the bucket in place
            buckets = trio.run(init.ensure_buckets, storage)
            assert buckets == [env_file["CJ_STORAGE_BACKENDS_RECORDINGS_BUCKET"]]
        s3 = client(endpoint, key, secret)
        s3.put_object(Bucket=buckets[0], Key="probe", Body=b"ok")  # type: ignore[attr-defined]
        body = s3.get_object(Bucket=buckets[0], Key="probe")["Body"].read()  # type: ignore[attr-defined]
        assert body == b"ok"
        # Anything not signed with the env file's secret is refused.
        with pytest.raises(ClientError) as refused:
            client(endpoint, key, "wrong-secret").get_object(Bucket=buckets[0], Key="probe")  # type: ignore[attr-defined]
        assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        identities = tmp_path / "data" / "s3-identities.json"
        assert identities.stat().st_mode & 0o077 == 0


def test_seaweedfs_start_refuses_missing_or_unsafe_credentials(tmp_path: Path) -> None:
    base = {"PATH": os.environ["PATH"], "WEED": "/bin/false", "SEAWEEDFS_DIR": str(tmp_path)}
    missing = subprocess.run(["sh", str(SCRIPT)], env=base, capture_output=True, text=True)
    assert missing.returncode == 2 and KEY_VAR in missing.stderr
    unsafe = subprocess.run(
        ["sh", str(SCRIPT)],
        env={**base, KEY_VAR: "key", SECRET_VAR: 'se"cret'},
        capture_output=True,
        text=True,
    )
    assert unsafe.returncode == 2 and "may hold only" in unsafe.stderr
    assert not (tmp_path / "s3-identities.json").exists()
