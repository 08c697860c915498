"""TLS on the WebSocket/API port, with certificates made by the test."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pbxws.config import SslConfig
from pbxws.server import Server, StartupError
from tests.conftest import StartProcess, timeout

from .conftest import APP_ID, APP_KEY, Api, make_config

PASSPHRASE = "correct horse battery staple"


@dataclass(frozen=True)
class Pki:
    """PEM files of a throw-away CA, a server certificate and client certificates."""

    ca: Path
    cert: Path
    key: Path  # encrypted with PASSPHRASE
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from another CA
    rogue_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: str = "") -> Path:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and two client certificates."""
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("pbxws test CA", ca_key, None, ca=True)
    ca = (ca_cert.subject, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    rogue_ca_key = ec.generate_private_key(ec.SECP256R1())
    rogue_ca = (_name("rogue CA"), rogue_ca_key)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    return Pki(
        ca=_write_cert(d / "ca.pem", ca_cert),
        cert=_write_cert(
            d / "server.pem", _issue("localhost", server_key, ca, server=True)
        ),
        key=_write_key(d / "server.key", server_key, PASSPHRASE),
        client_cert=_write_cert(d / "client.pem", _issue("client", client_key, ca)),
        client_key=_write_key(d / "client.key", client_key),
        rogue_cert=_write_cert(d / "rogue.pem", _issue("rogue", rogue_key, rogue_ca)),
        rogue_key=_write_key(d / "rogue.key", rogue_key),
    )


def client_context(
    pki: Pki, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A client context that trusts the test CA (and presents ``cert`` if given)."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


StartTls = Callable[[SslConfig], Awaitable[Server]]


@pytest.fixture
async def tls_node() -> AsyncIterator[StartTls]:
    """Factory: a node whose main port speaks TLS with the given ``[ssl]`` table."""
    servers: list[Server] = []

    async def start(ssl_config: SslConfig) -> Server:
        server = Server(msgspec.structs.replace(make_config(), ssl=ssl_config))
        await asyncio.wait_for(server.start(), timeout())
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.wait_for(server.stop(), timeout(2))


async def _established(session: aiohttp.ClientSession, url: str, **kw: Any) -> str:
    async with session.ws_connect(url, **kw) as ws:
        msg = await ws.receive(timeout=timeout())
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        return str(json.loads(msg.data)["event"])


async def test_wss_and_https_with_an_encrypted_key(
    tls_node: StartTls, pki: Pki
) -> None:
    """With cert, key and passphrase the main port serves wss:// and https://; port 9601 stays plain."""
    server = await tls_node(
        SslConfig(cert=str(pki.cert), key=str(pki.key), passphrase=PASSPHRASE)
    )
    connector = aiohttp.TCPConnector(ssl=client_context(pki))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"wss://localhost:{server.port}/app/{APP_KEY}?protocol=7"
        assert await _established(session, url) == "pusher:connection_established"
        api = Api(session, server)
        api.base = f"https://127.0.0.1:{server.port}"
        status, body = await api.call("GET", f"/apps/{APP_ID}/channels")
        assert (status, body) == (200, {"channels": {}})
        async with session.get(f"http://127.0.0.1:{server.metrics_port}/ready") as resp:
            assert resp.status == 200


async def test_plain_http_is_not_served_on_a_tls_port(
    tls_node: StartTls, pki: Pki
) -> None:
    """A client that doesn't speak TLS gets no answer from the TLS port."""
    server = await tls_node(
        SslConfig(cert=str(pki.cert), key=str(pki.key), passphrase=PASSPHRASE)
    )
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{server.port}/") as resp:
                await resp.read()


async def test_ca_asks_for_client_certificates_and_checks_them(
    tls_node: StartTls, pki: Pki
) -> None:
    """With ssl.ca, clients with a certificate from that CA or none are served, others refused."""
    server = await tls_node(
        SslConfig(
            cert=str(pki.cert), key=str(pki.key), passphrase=PASSPHRASE, ca=str(pki.ca)
        )
    )
    url = f"wss://localhost:{server.port}/app/{APP_KEY}?protocol=7"
    for context in (
        client_context(pki, pki.client_cert, pki.client_key),
        client_context(pki),
    ):
        async with aiohttp.ClientSession() as session:
            assert await _established(session, url, ssl=context) == (
                "pusher:connection_established"
            )
    rogue = client_context(pki, pki.rogue_cert, pki.rogue_key)
    async with aiohttp.ClientSession() as session:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await _established(session, url, ssl=rogue)


async def test_wrong_passphrase_is_a_startup_error(pki: Pki) -> None:
    """A key that can't be decrypted stops the start with a one-line reason."""
    config = msgspec.structs.replace(
        make_config(),
        ssl=SslConfig(cert=str(pki.cert), key=str(pki.key), passphrase="wrong"),
    )
    with pytest.raises(StartupError, match="cannot load TLS certificate"):
        await Server(config).start()


async def test_soketi_ssl_variables_enable_tls(
    pbxws_process: StartProcess, pki: Pki
) -> None:
    """SOKETI_SSL_CERT, SOKETI_SSL_KEY and SOKETI_SSL_PASS turn TLS on for `pbxws serve`."""
    server = await pbxws_process(
        env={
            "SOKETI_SSL_CERT": str(pki.cert),
            "SOKETI_SSL_KEY": str(pki.key),
            "SOKETI_SSL_PASS": PASSPHRASE,
        }
    )
    started = await server.wait_for_log("server_started")
    assert started["tls"] is True
    connector = aiohttp.TCPConnector(ssl=client_context(pki))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"wss://127.0.0.1:{server.port}/app/app-key?protocol=7"
        assert await _established(session, url) == "pusher:connection_established"
    # The passphrase is never written to the log.
    assert not any(PASSPHRASE in line for line in server.output.lines)
