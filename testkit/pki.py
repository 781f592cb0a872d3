"""Test certificates made with ``cryptography``: a CA, servers and clients, as PEM."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Identity:
    """A certificate and its key, as PEM."""

    cert: bytes
    key: bytes

    @property
    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert).public_bytes(serialization.Encoding.DER)

    def write(self, directory: Path, cert_name: str, key_name: str) -> None:
        replace_file(directory / cert_name, self.cert)
        replace_file(directory / key_name, self.key)


def replace_file(path: Path, data: bytes) -> None:
    """Write *data* to *path* by renaming a complete file over it, as Kubernetes updates
    a mounted secret, so that a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


Signer = tuple[x509.Name, ec.EllipticCurvePrivateKey]


def issue(subject: str, issuer: Signer | None, *,
          ca: bool = False, server: bool = False, client: bool = False) -> Identity:
    """A certificate for *subject* signed by *issuer* (None: self-signed), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer else (name, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    return Identity(
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def certificate_authority(subject: str) -> tuple[Identity, Signer]:
    """A new CA: its certificate and key, and what signs with it."""
    identity = issue(subject, None, ca=True)
    key = serialization.load_pem_private_key(identity.key, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return identity, (x509.load_pem_x509_certificate(identity.cert).subject, key)


@dataclass(frozen=True)
class PKI:
    """A CA with two server certificates and a client; a second CA with its own client."""

    ca: Identity
    server: Identity
    server_rotated: Identity
    client: Identity
    other_ca: Identity
    other_client: Identity

    def write_secret(self, directory: Path) -> Path:
        """*directory* with tls.crt, tls.key and ca.crt, as a mounted Kubernetes secret."""
        self.server.write(directory, "tls.crt", "tls.key")
        (directory / "ca.crt").write_bytes(self.ca.cert)
        return directory


def make_pki() -> PKI:
    """A fresh CA with two server certificates and a client; another CA and its client."""
    ca, ca_signer = certificate_authority("test CA")
    other_ca, other_signer = certificate_authority("other CA")
    return PKI(
        ca=ca,
        server=issue("server one", ca_signer, server=True),
        server_rotated=issue("server two", ca_signer, server=True),
        client=issue("prometheus", ca_signer, client=True),
        other_ca=other_ca,
        other_client=issue("stranger", other_signer, client=True),
    )
