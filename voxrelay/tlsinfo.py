"""What is wrong with a certificate, in words: expired, not yet valid, not matching its key, wrong CA.

Both sides use it: the recognizer checks its own certificate at start (and warns when it expires
soon), the edge checks its client certificate and, when a handshake fails, the server's. Parsing uses
the ``cryptography`` package; without it the checks are skipped (gRPC still refuses bad certificates,
only less clearly).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

EXPIRY_WARNING_DAYS = 14


def _x509() -> Any:
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - depends on the install
        return None
    return x509


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class CertificateInfo:
    """The facts about one certificate that a message needs."""

    subject: str
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    cert: Any  # cryptography.x509.Certificate

    def describe(self) -> str:
        return f"{self.subject}, issued by {self.issuer}"

    def validity_problem(self, now: datetime.datetime | None = None) -> str | None:
        """'expired on …' or 'is not valid before …', or None while valid."""
        now = now or _now()
        if now > self.not_after:
            return f"expired on {self.not_after:%Y-%m-%d %H:%M} UTC ({_ago(now - self.not_after)} ago)"
        if now < self.not_before:
            wait = _ago(self.not_before - now)
            return f"is not valid before {self.not_before:%Y-%m-%d %H:%M} UTC (in {wait}; check the clock)"
        return None

    def expires_within(self, days: float, now: datetime.datetime | None = None) -> float | None:
        """Days left if the certificate expires within ``days`` (and has not yet), else None."""
        now = now or _now()
        left = (self.not_after - now).total_seconds() / 86400
        return left if 0 <= left <= days else None


def _ago(delta: datetime.timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{max(1, round(seconds / 60))} minutes"


def _name(name: Any) -> str:
    return name.rfc4514_string() or "(no name)"


def certificates(pem: bytes) -> list[CertificateInfo]:
    """Every certificate in a PEM bundle (empty without ``cryptography`` or when none parses)."""
    x509 = _x509()
    if x509 is None:
        return []
    try:
        loaded = x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []
    return [info(cert) for cert in loaded]


def info(cert: Any) -> CertificateInfo:
    return CertificateInfo(
        subject=_name(cert.subject),
        issuer=_name(cert.issuer),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        cert=cert,
    )


def from_der(der: bytes) -> CertificateInfo | None:
    x509 = _x509()
    if x509 is None:
        return None
    try:
        return info(x509.load_der_x509_certificate(der))
    except ValueError:
        return None


def key_matches(cert: CertificateInfo, key_pem: bytes) -> bool | None:
    """Whether ``key_pem`` is the private key of ``cert`` (None when it cannot be told)."""
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:  # pragma: no cover
        return None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    return bool(
        key.public_key().public_bytes(encoding, public) == cert.cert.public_key().public_bytes(encoding, public)
    )


def issued_by(cert: CertificateInfo, authorities: list[CertificateInfo]) -> bool | None:
    """Whether one of ``authorities`` signed ``cert`` directly (None when it cannot be told)."""
    if not authorities:
        return None
    for ca in authorities:
        try:
            cert.cert.verify_directly_issued_by(ca.cert)
            return True
        except (ValueError, TypeError):
            continue
        except Exception:  # InvalidSignature and friends
            continue
    return False


def check_pair(
    flag_cert: str, cert_path: str, cert_pem: bytes, flag_key: str, key_path: str, key_pem: bytes
) -> str | None:
    """The problem with a certificate and its key as one line naming the files, or None."""
    chain = certificates(cert_pem)
    if not chain:
        return None
    leaf = chain[0]
    problem = leaf.validity_problem()
    if problem is not None:
        return f"{flag_cert}: the certificate in {cert_path} ({leaf.subject}) {problem}; renew it"
    if key_matches(leaf, key_pem) is False:
        return (
            f"{flag_key}: {key_path} is not the private key of the certificate in {cert_path} ({leaf.subject}); "
            "give the key the certificate was issued for"
        )
    return None
