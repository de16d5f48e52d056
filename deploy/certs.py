"""Throwaway TLS material for a SuperLink: a private CA and a server certificate signed by it.

    python -m deploy.certs OUT_DIR [--host superlink.example.org] [--ip 203.0.113.7] [--days 365]

writes, under OUT_DIR:

    ca.crt       the CA certificate. Public: every SuperNode and every `flwr` CLI user gets it
                 (`--root-certificates`, `root-certificates` in the Flower config) to verify the
                 SuperLink.
    ca.key       the CA private key. Only needed to sign another server certificate; keep it
                 offline (mode 0600).
    server.crt   the SuperLink's certificate, with subjectAltNames for every --host/--ip
                 (localhost and 127.0.0.1 are always included), signed by the CA.
    server.key   the SuperLink's TLS private key (mode 0600); stays on the coordinator.

Everything is generated locally with `cryptography` (EC P-384, SHA-384); nothing touches the
network. For a public SuperLink an operator may instead use a certificate from a public CA and
give SuperNodes that CA's bundle.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"


@dataclass(frozen=True)
class CertPaths:
    """Where the CA and server certificate and keys of a deployment lie."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def under(cls, directory: Path) -> "CertPaths":
        d = Path(directory)
        return cls(d / CA_CERT, d / CA_KEY, d / SERVER_CERT, d / SERVER_KEY)

    def exist(self) -> bool:
        return all(p.is_file() for p in (self.ca_cert, self.server_cert, self.server_key))


def _write(path: Path, data: bytes, private: bool) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def generate(
    out_dir: Path,
    hosts: list[str] | tuple[str, ...] = (),
    ips: list[str] | tuple[str, ...] = (),
    days: int = 365,
    org: str = "Cairn federation",
) -> CertPaths:
    """Create a CA and a server certificate under `out_dir`; returns their paths.

    The server certificate always names localhost and 127.0.0.1 (and ::1), plus `hosts`
    (DNS names) and `ips`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = CertPaths.under(out)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # tolerate small clock skew
    until = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{org} CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )

    dns = ["localhost", *[h for h in hosts if h != "localhost"]]
    addrs = ["127.0.0.1", "::1", *[i for i in ips if i not in ("127.0.0.1", "::1")]]
    san = [x509.DNSName(h) for h in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in addrs]
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                                 x509.NameAttribute(NameOID.COMMON_NAME, dns[-1] if hosts else "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_agreement=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )

    _write(paths.ca_key, _pem_key(ca_key), private=True)
    _write(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(paths.server_key, _pem_key(server_key), private=True)
    _write(paths.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), private=False)
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m deploy.certs", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--host", action="append", default=[], help="DNS name of the SuperLink (repeatable)")
    p.add_argument("--ip", action="append", default=[], help="IP address of the SuperLink (repeatable)")
    p.add_argument("--days", type=int, default=365)
    a = p.parse_args(argv)
    paths = generate(a.out_dir, a.host, a.ip, a.days)
    for f in (paths.ca_cert, paths.ca_key, paths.server_cert, paths.server_key):
        print(f)


if __name__ == "__main__":
    main()
