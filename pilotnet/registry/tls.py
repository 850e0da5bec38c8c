"""TLS for the registry listener, with a self-signed certificate when none is given.

Clients pin the certificate by the hex SHA-256 of its DER encoding (what the Go
daemon's ``-registry-fingerprint`` expects), so a generated certificate is as
usable as a CA-signed one; the fingerprint is logged at start-up.
"""

import datetime
import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.protocols.tls import TLSMemoryBIOFactory


def self_signed_certificate(now=None):
    """A fresh ECDSA P-256 key and a one-year server certificate for localhost."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Pilot Protocol"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "pilotnet registry")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def load_certificate(cert_path, key_path):
    with open(cert_path, "rb") as handle:
        certificate = x509.load_pem_x509_certificate(handle.read())
    with open(key_path, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    return key, certificate


def fingerprint(certificate):
    """Hex SHA-256 of the certificate's DER bytes, the value clients pin."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


class _ServerContext:
    """A TLS 1.2+ server context holding cryptography key objects directly.

    (Twisted's ``CertificateOptions`` wants pyOpenSSL key objects, which
    pyOpenSSL now deprecates.)
    """

    def __init__(self, key, certificate):
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.use_certificate(certificate)
        context.use_privatekey(key)
        context.check_privatekey()
        self._context = context

    def getContext(self):
        return self._context


def tls_factory(factory, key, certificate):
    """``factory`` wrapped so every connection speaks TLS first."""
    return TLSMemoryBIOFactory(_ServerContext(key, certificate), False, factory)
