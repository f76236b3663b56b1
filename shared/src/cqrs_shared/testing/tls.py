"""Throwaway certificates for TLS tests: a CA and a server certificate it signed, as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(subject: str, issuer: str, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def make_ca(directory: Path, name: str = "test-ca") -> tuple[Path, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate (`<name>.pem`) and its key."""
    key = _key()
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _write(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM)), key


def make_server_certificate(
    directory: Path, *, ip_addresses: tuple[str, ...] = ("127.0.0.1",)
) -> ServerCertificate:
    """A CA and a server certificate for `ip_addresses` only (no DNS names), so a client that
    connects by another name fails host name verification."""
    ca_file, ca_key = make_ca(directory)
    key = _key()
    cert = (
        _builder("postgres-under-test", "test-ca", key.public_key())
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ServerCertificate(
        ca_file,
        _write(directory / "server.crt", cert.public_bytes(serialization.Encoding.PEM)),
        # PostgreSQL refuses a key file others can read.
        _write(directory / "server.key", key_pem, 0o600),
    )
