"""``fenliu serve`` refuses bad settings in one line that names the file and says why; /metrics over TLS.

Every server here binds 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import os
import ssl
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fenliu import Triage, complaint_from_dict
from fenliu.serving import metrics
from fenliu.serving.decision_log import DecisionLog
from fenliu.serving.logs import setup_logging
from grpc_helpers import PACK, Certs, ServeProcess, make_certs, serve_refused

KEY_ENV = {**os.environ, "FENLIU_DECISION_LOG_KEY": "k" * 32}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _one_line(proc: object) -> str:
    stderr = proc.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if not ln.startswith("{")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_tls_key_that_does_not_match_its_certificate_says_so(certs: Certs, workers: str) -> None:
    proc = serve_refused(
        "--workers", workers, "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.client_key)
    )
    assert proc.returncode == 2
    line = _one_line(proc)
    assert line == (
        f"fenliu serve: --tls-key {certs.client_key} does not match the certificate "
        f"--tls-cert {certs.server_cert}"
    )
    assert "Failed to bind" not in proc.stderr


def test_serve_tls_files_unreadable_or_not_pem_named(certs: Certs, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    cases = [
        (["--tls-cert", str(certs.server_cert), "--tls-key", str(tmp_path / "missing.key")], "--tls-key"),
        (["--tls-cert", str(certs.server_cert), "--tls-key", str(junk)], "must be a PEM"),
        (
            [
                "--tls-cert",
                str(certs.server_cert),
                "--tls-key",
                str(certs.server_key),
                "--tls-client-ca",
                str(junk),
            ],
            "--tls-client-ca",
        ),
    ]
    for args, expected in cases:
        proc = serve_refused(*args)
        assert proc.returncode == 2, proc.stderr
        line = _one_line(proc)
        assert line.startswith("fenliu serve: ") and expected in line
        assert "not a key" not in proc.stderr  # a file's content is never quoted


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_decision_log_that_cannot_be_written_names_the_path(tmp_path: Path, workers: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for path, why in ((a_file / "d.jsonl", "Not a directory"), (tmp_path, "Is a directory")):
        proc = serve_refused("--workers", workers, "--decision-log", str(path), env=KEY_ENV)
        assert proc.returncode == 2
        assert _one_line(proc).startswith(f"fenliu serve: cannot write the decision log {path}: {why}")
        assert "FileNotFoundError" not in proc.stderr and "NotADirectoryError" not in proc.stderr


def test_decision_log_write_failure_is_an_event_with_the_path(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    path = tmp_path / "d.jsonl"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC
    buf = io.StringIO()
    setup_logging("INFO", stream=buf)
    try:
        triage = Triage.from_path(str(PACK))
        decision = triage.decide(
            complaint_from_dict({"id": "d1", "text": "邻居排水"}, now=datetime(2026, 3, 1, tzinfo=UTC))
        )
        with DecisionLog(path, max_bytes=0, backups=0, hash_key=b"k" * 32) as dl:
            assert dl.write(decision) is False
            assert dl.write(decision) is False
    finally:
        setup_logging("INFO")
    (line,) = [json.loads(x) for x in buf.getvalue().splitlines()]  # once, not per lost line
    assert line["event"] == "decision_log_write_failed"
    assert line["path"] == str(path) and line["error"] == "No space left on device"
    assert line["lines_lost"] == 1


def test_metrics_address_without_host_is_local_and_is_local_tells() -> None:
    server, port = metrics.Metrics().start_http(":0")
    try:
        assert server.server_address[0] == "127.0.0.1" and port > 0
    finally:
        server.shutdown()
        server.server_close()
    assert metrics.is_local("127.0.0.1:9464") and metrics.is_local(":9464") and metrics.is_local("[::1]:9464")
    assert not metrics.is_local("0.0.0.0:9464") and not metrics.is_local("10.1.2.3:9464")


def test_serve_metrics_tls_requires_the_grpc_client_certificate(certs: Certs, tmp_path: Path) -> None:
    srv = ServeProcess(
        [
            "--rules", str(PACK), "--address", "127.0.0.1:0", "--workers", "1", "--no-watch",
            "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
            "--tls-client-ca", str(certs.ca),
            "--metrics-address", "127.0.0.1:0", "--metrics-tls",
        ],
        tmp_path / "log",
    )  # fmt: skip
    try:
        (event,) = srv.wait_for("metrics_serving")
        assert event["tls"] is True
        url = f"https://127.0.0.1:{event['port']}/metrics"
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
            assert resp.status == 200 and b"fenliu_" in resp.read()
        no_cert = ssl.create_default_context(cafile=str(certs.ca))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            urllib.request.urlopen(url, context=no_cert, timeout=10).read()
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{event['port']}/metrics", timeout=10).read()
        assert not srv.events("metrics_plaintext")
    finally:
        srv.stop()
        srv.kill()
