"""Saying what is wrong when a TLS connection to the recognizer fails.

gRPC reports a failed handshake as "Ssl handshake failed" or, for a client certificate the server
refuses after a TLS 1.3 handshake, as "Socket closed". :func:`diagnose` looks for itself: it makes a
plain TLS connection (no verification) with the same client certificate, reads the server's
certificate and any alert the server sends, and names the problem — the server's certificate has
expired or is not yet valid, is not signed by the CA in ``--tls-ca``, does not name the host; the
server wants a client certificate, or refused ours; or the server does not speak TLS at all.
:func:`check_own_certificate` checks the client certificate before anything is sent.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path

from voxrelay import tlsinfo
from voxrelay.edge.link.settings import UplinkSettings
from voxrelay.errors import InvalidArgument
from voxrelay.netaddr import split_host_port

PROBE_TIMEOUT = 5.0

_CLIENT_ALERTS = {
    "CERTIFICATE_REQUIRED": "the recognizer requires a client certificate (mutual TLS): give --tls-cert and --tls-key",
    "CERTIFICATE_EXPIRED": "the recognizer refused this device's certificate as expired",
    "UNKNOWN_CA": "the recognizer does not trust the CA that signed this device's certificate",
    "BAD_CERTIFICATE": "the recognizer refused this device's certificate: it takes only certificates signed by "
    "the CA of its --tls-client-ca",
    "CERTIFICATE_UNKNOWN": "the recognizer refused this device's certificate",
    "HANDSHAKE_FAILURE": "the recognizer refused the TLS handshake",
}


def _read(path: str) -> bytes:
    return Path(path).expanduser().read_bytes()


def check_own_certificate(settings: UplinkSettings) -> None:
    """Refuse to start with an expired, not yet valid or mismatched client certificate (one clear line)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return
    try:
        cert, key = _read(settings.tls_cert), _read(settings.tls_key)
    except OSError:
        return  # the channel reports unreadable files itself
    problem = tlsinfo.check_pair("--tls-cert", settings.tls_cert, cert, "--tls-key", settings.tls_key, key)
    if problem is not None:
        raise InvalidArgument(problem)


def _names_host(cert: tlsinfo.CertificateInfo, host: str) -> bool | None:
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover
        return None
    try:
        names = cert.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return address in names.get_values_for_type(x509.IPAddress)
    for name in names.get_values_for_type(x509.DNSName):
        if name == host or (name.startswith("*.") and host.split(".", 1)[-1] == name[2:]):
            return True
    return False


def _alert(err: ssl.SSLError) -> str:
    return str(getattr(err, "reason", "") or err).upper()


def diagnose(settings: UplinkSettings) -> str | None:
    """What is wrong with TLS to ``settings.server``, in one sentence; None if nothing is found."""
    host, port = split_host_port(settings.server)
    if not host or not port:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if settings.tls_cert and settings.tls_key:
        try:
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
        except (OSError, ssl.SSLError):
            return None
    der: bytes | None = None
    alert = ""
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT) as raw:
            try:
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    der = tls.getpeercert(binary_form=True)
                    tls.settimeout(1.0)
                    try:
                        # A client certificate refused after a TLS 1.3 handshake shows here: an alert, or
                        # the connection closed at once where a gRPC server would send its settings.
                        if tls.recv(1) == b"":
                            alert = "CLOSED_AFTER_HANDSHAKE"
                    except ssl.SSLError as err:
                        alert = _alert(err)
                    except (TimeoutError, OSError):
                        pass
            except ssl.SSLError as err:
                alert = _alert(err)
    except OSError:
        return None  # not reachable at all: not a TLS problem
    if "WRONG_VERSION_NUMBER" in alert or "RECORD_LAYER_FAILURE" in alert or "PACKET_LENGTH" in alert:
        return f"the recognizer at {settings.server} does not speak TLS (plaintext?); leave out --tls and --tls-ca"
    where = f"the recognizer at {settings.server}"
    if der is not None:
        cert = tlsinfo.from_der(der)
        if cert is not None:
            problem = cert.validity_problem()
            if problem is not None:
                return f"TLS: the certificate of {where} ({cert.subject}) {problem}; it must be renewed there"
            if settings.tls_ca:
                try:
                    authorities = tlsinfo.certificates(_read(settings.tls_ca))
                except OSError:
                    authorities = []
                if tlsinfo.issued_by(cert, authorities) is False:
                    trusted = ", ".join(ca.subject for ca in authorities)
                    return (
                        f"TLS: the certificate of {where} ({cert.describe()}) is not signed by the CA in --tls-ca "
                        f"({trusted}); give --tls-ca the CA that issued it"
                    )
            if _names_host(cert, host) is False:
                return (
                    f"TLS: the certificate of {where} ({cert.subject}) does not name {host}; connect by a name "
                    "it lists, or reissue it with this name"
                )
    if alert == "CLOSED_AFTER_HANDSHAKE":
        alert = "BAD_CERTIFICATE" if settings.tls_cert else "CERTIFICATE_REQUIRED"
    for mark, message in _CLIENT_ALERTS.items():
        if mark in alert:
            own = ""
            if settings.tls_cert:
                try:
                    chain = tlsinfo.certificates(_read(settings.tls_cert))
                except OSError:
                    chain = []
                own = f" ({chain[0].describe()})" if chain else ""
            return f"TLS: {message}{own}"
    return None


def speaks_tls(settings: UplinkSettings) -> bool:
    """Whether the server answers a TLS handshake (the edge was told plaintext)."""
    host, port = split_host_port(settings.server)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError, ValueError):
        return False
