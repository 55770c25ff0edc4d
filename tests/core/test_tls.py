"""https:// servers: verification is on by default, an untrusted CA is one clear line, and
``--ca-bundle`` trusts a private CA.

The mock server speaks plain HTTP, so each test puts a small TLS-terminating proxy in front of
it, with a server certificate for 127.0.0.1 signed by a throwaway CA made here.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import attrs
import pytest
from aiperf.testing import MockServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.integration


@attrs.frozen
class Pki:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(root: Path, *, ca_name: str = "aiperf test CA") -> Pki:
    """A CA and a server certificate for 127.0.0.1 / localhost, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    root.mkdir(parents=True, exist_ok=True)
    pki = Pki(ca_pem=root / "ca.pem", cert_pem=root / "server.pem", key_pem=root / "server.key")
    pki.ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


class TlsProxy:
    """Accepts TLS on 127.0.0.1 (port chosen by the OS) and relays plain bytes to a backend."""

    def __init__(self, pki: Pki, backend_port: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.cert_pem, pki.key_pem)
        self.backend_port = backend_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshake_failures = 0
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self._keep(raw)
            self._spawn(self._serve, raw)

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            # The client refused our certificate (or went away): that is what some tests want.
            with self._lock:
                self.handshake_failures += 1
            raw.close()
            return
        self._keep(client)
        try:
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
        except OSError:
            client.close()
            return
        self._keep(backend)
        self._spawn(self._pump, backend, client)
        self._pump(client, backend)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_server(pki: Pki) -> Iterator[TlsProxy]:
    with MockServer(output_tokens=8) as server, TlsProxy(pki, server.port) as proxy:
        yield proxy


def _no_trust_env() -> dict[str, str]:
    """The child's trust store is the system's only: no CA file or directory from the shell."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _profile_args(url: str, run_dir: Path, *extra: str) -> list[str]:
    return [
        "profile", "--url", url, "-m", "mock-model", "--streaming",
        "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "8",
        "--request-count", "4", "--artifact-dir", str(run_dir), "--no-progress", *extra,
    ]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiperf", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )


class TestTls:
    def test_tls_untrusted_ca_is_one_line_exit_1(self, https_server: TlsProxy, tmp_path: Path) -> None:
        """Verification is on by default: a certificate from an unknown CA stops the run at once."""
        result = _run(_profile_args(https_server.url, tmp_path / "run"), _no_trust_env())
        assert 1 == result.returncode, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("aiperf: error:")]
        assert 1 == len(errors), result.stderr
        assert "Traceback" not in result.stderr
        assert "certificate" in errors[0] and "--ca-bundle" in errors[0]
        assert https_server.url in errors[0]
        # nothing was sent and no run directory pretends otherwise
        assert not (tmp_path / "run" / "profile_export_aiperf.json").exists()

    def test_tls_ca_bundle_flag_trusts_a_private_ca(
        self, https_server: TlsProxy, pki: Pki, tmp_path: Path
    ) -> None:
        """--ca-bundle ca.pem: every request goes through, over TLS."""
        run_dir = tmp_path / "run"
        result = _run(
            _profile_args(https_server.url, run_dir, "--ca-bundle", str(pki.ca_pem)), _no_trust_env()
        )
        assert 0 == result.returncode, result.stderr
        summary = json.loads((run_dir / "profile_export_aiperf.json").read_text())
        assert 4 == summary["metrics"]["request_count"]["avg"]
        assert 0 == summary["metrics"]["error_request_count"]["avg"]

    def test_tls_default_trust_store_is_used(
        self, https_server: TlsProxy, pki: Pki, tmp_path: Path
    ) -> None:
        """Without --ca-bundle the system trust store decides (here: SSL_CERT_FILE points at our CA)."""
        run_dir = tmp_path / "run"
        env = {**_no_trust_env(), "SSL_CERT_FILE": str(pki.ca_pem)}
        result = _run(_profile_args(https_server.url, run_dir), env)
        assert 0 == result.returncode, result.stderr
        summary = json.loads((run_dir / "profile_export_aiperf.json").read_text())
        assert 4 == summary["metrics"]["request_count"]["avg"]

    def test_tls_ca_bundle_of_another_ca_is_refused(
        self, https_server: TlsProxy, tmp_path: Path
    ) -> None:
        """A bundle that does not hold the server's CA does not make the server trusted."""
        other = make_pki(tmp_path / "other", ca_name="someone else's CA")
        result = _run(
            _profile_args(https_server.url, tmp_path / "run", "--ca-bundle", str(other.ca_pem)),
            _no_trust_env(),
        )
        assert 1 == result.returncode, result.stderr
        assert "Traceback" not in result.stderr
        assert "certificate" in result.stderr
