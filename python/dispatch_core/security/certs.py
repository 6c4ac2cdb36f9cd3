"""Development certificates: a CA, a server certificate and one client certificate per role.

`dispatch-core certs --out DIR` writes them so a secured server can be tried on one
machine (README, "Security"). They are for development and tests only: the CA's key sits
beside the certificates, unencrypted, and every certificate lasts a year. A force issues
its own from its PKI.

Files written (PEM): `ca.crt` `ca.key`, `server.crt` `server.key` (SAN localhost,
127.0.0.1, ::1), and `<role>.crt` `<role>.key` for every role, whose subject CN is
`dev-<role>`: the principal the shipped policy maps to that role.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: How long a development certificate lasts.
VALIDITY = dt.timedelta(days=365)
#: Principals of the development client certificates: `dev-<role>`.
DEV_PRINCIPAL_PREFIX = "dev-"


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def write(self, directory: Path, stem: str) -> None:
        (directory / f"{stem}.crt").write_bytes(self.cert_pem)
        key = directory / f"{stem}.key"
        key.write_bytes(self.key_pem)
        key.chmod(0o600)


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256: the handshake's signature is several times cheaper than RSA-2048's.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dispatch-core development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(common_name: str = "dispatch-core development CA") -> Issued:
    """A self-signed CA certificate."""
    key = _key()
    now = dt.datetime.now(dt.UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: Issued,
    common_name: str,
    *,
    server: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A leaf certificate signed by `ca`: a server's (`server=True`, names in `dns`/`ips`)
    or a client's. The validity bounds are arguments so tests can make expired and
    not-yet-valid certificates with the same code."""
    key = _key()
    ca_cert = ca.cert
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def write_dev_certs(out: Path, roles: tuple[str, ...]) -> list[Path]:
    """Writes the development CA, server and per-role client certificates into `out`
    (created if missing); returns the certificate files written."""
    out.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    ca.write(out, "ca")
    issue(ca, "localhost", server=True, dns=("localhost",), ips=("127.0.0.1", "::1")).write(
        out, "server"
    )
    for role in roles:
        issue(ca, f"{DEV_PRINCIPAL_PREFIX}{role}").write(out, role)
    return [out / f"{stem}.crt" for stem in ("ca", "server", *roles)]
