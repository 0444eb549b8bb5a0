"""TLS and mutual TLS from certificate files the test generates."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fenliu import Triage
from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu.cli.serve import add_call_arguments, run_call
from fenliu.serving import convert
from fenliu.serving.config import TlsFiles
from grpc_helpers import PACK, Certs, make_certs, serving, stub_for

COMPLAINT = {"id": "tls-1", "text": "邻居家的排水沟堵了"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage.from_path(str(PACK))


@pytest.fixture(scope="module")
def tls_target(certs: Certs, triage: Triage) -> Iterator[str]:
    with serving(triage, tls=TlsFiles(str(certs.server_cert), str(certs.server_key))) as (target, _):
        yield target


@pytest.fixture(scope="module")
def mtls_target(certs: Certs, triage: Triage) -> Iterator[str]:
    tls = TlsFiles(str(certs.server_cert), str(certs.server_key), str(certs.ca))
    with serving(triage, tls=tls) as (target, _):
        yield target


def _creds(ca: Path, cert: Path | None = None, key: Path | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


def _call(target: str, creds: grpc.ChannelCredentials | None) -> str:
    with stub_for(target, creds) as stub:
        resp = stub.Triage(pb.TriageRequest(complaint=convert.complaint_to_proto(COMPLAINT)), timeout=10)
    return str(resp.decision.category)


def _refused(target: str, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        _call(target, creds)
    return info.value.code()


def test_tls_client_trusting_the_ca_is_served(tls_target: str, certs: Certs) -> None:
    assert _call(tls_target, _creds(certs.ca)) == "neighbor"


def test_tls_client_trusting_another_ca_is_refused(tls_target: str, certs: Certs) -> None:
    assert _refused(tls_target, _creds(certs.other_ca)) == grpc.StatusCode.UNAVAILABLE


def test_tls_plaintext_client_is_refused(tls_target: str) -> None:
    assert _refused(tls_target, None) == grpc.StatusCode.UNAVAILABLE


def test_mtls_client_with_certificate_is_served(mtls_target: str, certs: Certs) -> None:
    assert _call(mtls_target, _creds(certs.ca, certs.client_cert, certs.client_key)) == "neighbor"


def test_mtls_client_without_certificate_is_refused(mtls_target: str, certs: Certs) -> None:
    assert _refused(mtls_target, _creds(certs.ca)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_call_command_with_client_certificate_decides(
    mtls_target: str, certs: Certs, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_call_arguments(parser)
    args = [json.dumps(COMPLAINT, ensure_ascii=False), "--address", mtls_target, "--tls-ca", str(certs.ca)]
    args += ["--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key)]
    assert run_call(parser.parse_args(args)) == 0
    assert json.loads(capsys.readouterr().out)["category"] == "neighbor"
    assert run_call(parser.parse_args(args[:5])) == 2  # no client certificate: refused
