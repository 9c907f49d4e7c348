"""Self-signed serving certificates for the webhook, for when no certificate secret is mounted."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
VALIDITY = dt.timedelta(days=365)
# Backdated so an API server whose clock runs a little behind ours still accepts the certificate.
_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CertBundle:
    """A CA certificate (the webhook's caBundle) and the serving certificate and key it signed, all PEM."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def generate_serving_cert(
    dns_names: list[str], ip_addresses: list[str], *, common_name: str | None = None, validity: dt.timedelta = VALIDITY
) -> CertBundle:
    """A fresh ECDSA P-256 CA and a serving certificate it signs, valid for the given names and IPs."""
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, now, validity)
    key = ec.generate_private_key(ec.SECP256R1())
    name = common_name or (dns_names[0] if dns_names else ip_addresses[0])
    builder = (
        _base(_name(name), ca_cert.subject, key.public_key(), now, validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_sans(dns_names, ip_addresses)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    return CertBundle(_cert_pem(ca_cert), _cert_pem(cert), _key_pem(key))


def write_pair(directory: Path, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    """Write `tls.crt` and `tls.key` (the names of a kubernetes.io/tls secret); returns their paths.

    Each file is replaced atomically, so a reader never sees half a file; it may briefly see a new
    certificate with the old key, which the server's reloader refuses and retries.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    _replace(key_path, key_pem, mode=0o600)
    _replace(cert_path, cert_pem, mode=0o644)
    return cert_path, key_path


def write_serving_cert(directory: Path, dns_names: list[str], ip_addresses: list[str]) -> tuple[bytes, Path, Path]:
    """Generate a bundle and write its pair into `directory`; returns (ca_pem, cert_path, key_path)."""
    bundle = generate_serving_cert(dns_names, ip_addresses)
    cert_path, key_path = write_pair(directory, bundle.cert_pem, bundle.key_pem)
    return bundle.ca_pem, cert_path, key_path


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: dt.datetime, validity: dt.timedelta) -> x509.Certificate:
    subject = _name("kaito-webhook-ca")
    builder = (
        _base(subject, subject, key.public_key(), now, validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
    )
    return builder.sign(key, hashes.SHA256())


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: dt.datetime,
    validity: dt.timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _sans(dns_names: list[str], ip_addresses: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    return names


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _replace(path: Path, data: bytes, *, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
