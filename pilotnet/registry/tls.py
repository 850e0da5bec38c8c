"""TLS for the registry: the listener's certificate and the clients' pinned connections.

Clients pin the certificate by the hex SHA-256 of its DER encoding (what the Go
daemon's ``-registry-fingerprint`` expects, and our daemon's
``--registry-fingerprint``), so a generated certificate is as usable as a
CA-signed one; the fingerprint is logged at start-up.  A generated certificate
is kept beside the store (:func:`persistent_self_signed`), so the pin survives
restarts.
"""

import datetime
import hashlib
import hmac
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from pilotnet.crypto.identity import write_private_file


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


def persistent_self_signed(prefix):
    """The self-signed key and certificate at ``<prefix>-key.pem``/``-cert.pem``, made once.

    The key file is written 0600.  A later start loads the same pair, so the
    fingerprint clients pinned stays valid (until the one-year certificate is
    replaced by deleting the two files).
    """
    cert_path, key_path = f"{prefix}-cert.pem", f"{prefix}-key.pem"
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return load_certificate(cert_path, key_path)
    key, certificate = self_signed_certificate()
    write_private_file(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    write_private_file(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
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


def normalize_fingerprint(text):
    """``text`` as 64 lowercase hex digits (colons allowed), or ValueError."""
    digits = text.replace(":", "").strip().lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError("a registry fingerprint is the hex SHA-256 of its certificate (64 digits)")
    return digits


@implementer(IOpenSSLClientConnectionCreator)
class PinnedClientCreator:
    """Client TLS that accepts exactly the server certificate with ``pinned`` SHA-256.

    CA verification is not used (the registry's certificate is usually
    self-signed); the pin replaces it, as in the Go client's
    ``DialTLSPinned``.  The check runs in OpenSSL's verify callback, so the
    handshake fails before any request is sent to a server with another key.
    """

    def __init__(self, pinned):
        self._pinned = normalize_fingerprint(pinned)
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        self._context = context

    def _verify(self, connection, certificate, error_number, depth, ok):
        if depth != 0:
            return True  # only the leaf is pinned; the chain above it is not trusted for anything
        der = certificate.to_cryptography().public_bytes(serialization.Encoding.DER)
        return hmac.compare_digest(hashlib.sha256(der).hexdigest(), self._pinned)

    def clientConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        return connection
