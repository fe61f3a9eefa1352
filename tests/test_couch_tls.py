"""CouchDB over TLS (a cluster's load balancer, `COUCHDB_URL=https://…`): the server's client (pycouchdb) and the sync
gateway's (httpx2) both verify the certificate, against the CAs of `SSL_CERT_FILE` when it is set. pycouchdb's own
default is not to verify, which would hand CouchDB's admin credentials to whoever sits between the two hosts.

The TLS end here is a small forwarder in front of the session's pouchdb-server, with a certificate made for the test
by its own CA: real TLS on loopback, the same bytes behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx2
import pytest
import requests.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.domain.declaration import MAIN_DB
from server.store.config import Settings
from server.store.couch import connect
from server.store.embedded_couch import ADMIN_USER, EmbeddedCouch
from sync.upstream import Upstream


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 issuer_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if issuer is None:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(
            "127.0.0.1"))]), critical=False).add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, *items: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(b"".join(
        item.public_bytes(serialization.Encoding.PEM) if isinstance(item, x509.Certificate) else
        item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()) for item in items))
    return path


def _relay(source: socket.socket, sink: socket.socket, host: tuple[bytes, bytes] = (b"", b"")) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data.replace(*host) if host[0] else data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            end.close()


def _server_context(folder: Path, name: str) -> tuple[ssl.SSLContext, x509.Certificate]:
    """A TLS server's context with a certificate for 127.0.0.1 signed by a new CA (returned)."""
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(f"{name} CA", ca_key, None, ca_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(_pem(folder / f"{name}.pem", _certificate("127.0.0.1", server_key, ca, ca_key),
                                 server_key))
    return context, ca


class TlsFront:
    """TLS on a loopback port in front of pouchdb-server; `impostor` swaps in a certificate another CA signed (a
    machine in the middle) and drops the connections open, so that the next request meets it."""

    def __init__(self, couch_server: EmbeddedCouch, folder: Path) -> None:
        self.genuine, ca = _server_context(folder, "linli")
        self.ca = _pem(folder / "ca.pem", ca)
        self.context = self.genuine
        self.couch_port = couch_server.port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.open: list[socket.socket] = []
        self.stopping = threading.Event()
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()
        self.impostor_context, _ = _server_context(folder, "impostor")

    def _accept(self) -> None:
        port = self.listener.getsockname()[1]
        # The embedded CouchDB's gate answers only requests for its own Host (couch_gate.js): put back as a load
        # balancer would.
        host = (f"Host: 127.0.0.1:{port}\r\n".encode(), f"Host: 127.0.0.1:{self.couch_port}\r\n".encode())
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            try:
                client = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):  # a client that refused the certificate: what the tests want
                raw.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.couch_port))
            self.open += [client, upstream]
            threading.Thread(target=_relay, args=(client, upstream, host), daemon=True).start()
            threading.Thread(target=_relay, args=(upstream, client), daemon=True).start()

    @contextlib.contextmanager
    def impostor(self) -> Iterator[None]:
        self.context = self.impostor_context
        for end in self.open:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        try:
            yield
        finally:
            self.context = self.genuine

    def close(self) -> None:
        self.stopping.set()
        self.acceptor.join()
        self.listener.close()


@pytest.fixture(scope="module")
def tls(couch_server: EmbeddedCouch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFront]:
    front = TlsFront(couch_server, tmp_path_factory.mktemp("tls"))
    yield front
    front.close()


def _over_tls(settings: Settings, couch_server: EmbeddedCouch, url: str) -> Settings:
    return replace(settings, couchdb_url=url, couchdb_user=ADMIN_USER, couchdb_password=couch_server.password)


def test_the_servers_client_verifies_couchdbs_certificate(tls: TlsFront, couch_server: EmbeddedCouch,
                                                           settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    over_tls = _over_tls(settings, couch_server, tls.url)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        connect(over_tls)  # a certificate no CA it trusts signed: refused before a byte of the credentials
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))
    couch = connect(over_tls)  # the CA named: the same databases, through TLS
    couch.main.save({"_id": "tls-check", "seen": True})
    assert couch.main.get("tls-check")["seen"] is True
    with tls.impostor(), pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        couch.main.get("tls-check")  # later requests too (each database is a sub-resource of the server's)


def test_the_sync_gateways_client_verifies_couchdbs_certificate(tls: TlsFront, couch_server: EmbeddedCouch,
                                                                settings: Settings,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    connect(settings, couch_server.url)  # the test's databases, made over plain HTTP
    over_tls = _over_tls(settings, couch_server, tls.url)

    async def database_info() -> dict[str, object]:
        upstream = Upstream(over_tls, tls.url)
        try:
            return await upstream.call("GET", upstream.main)
        finally:
            await upstream.http.aclose()

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(database_info())
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))
    assert asyncio.run(database_info())["db_name"] == settings.db_name(MAIN_DB)
    with tls.impostor(), pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(database_info())
