"""HubSpot webhook signatures v1, v2 and v3 (reference §5.5), checked in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

MAX_AGE_MS = 5 * 60 * 1000
# v3: these escapes are decoded in the URI before signing; others (and the "?") stay as sent.
_V3_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
               "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


class SignatureError(Exception):
    """The request is not provably from HubSpot; the message says why (never the secret)."""


def _decode_v3_uri(uri: str) -> str:
    out = []
    index = 0
    while index < len(uri):
        escape = uri[index:index + 3].upper()
        if escape in _V3_DECODED:
            out.append(_V3_DECODED[escape])
            index += 3
        else:
            out.append(uri[index])
            index += 1
    return "".join(out)


def sign_v1(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


def sign_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.encode() + _decode_v3_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def verify(secret: str, method: str, uri: str, body: bytes, headers: Mapping[str, str], now_ms: int) -> str:
    """Check a request's signature; returns the version used. ``headers`` must be lower-cased."""
    v3 = headers.get("x-hubspot-signature-v3")
    if v3:
        timestamp = headers.get("x-hubspot-request-timestamp", "")
        if not timestamp.isdigit():
            raise SignatureError("v3 signature without a valid X-HubSpot-Request-Timestamp")
        age = now_ms - int(timestamp)
        if age > MAX_AGE_MS:
            raise SignatureError("v3 timestamp is older than 5 minutes")
        if age < -MAX_AGE_MS:
            raise SignatureError("v3 timestamp is more than 5 minutes in the future")
        if not hmac.compare_digest(sign_v3(secret, method, uri, body, timestamp), v3):
            raise SignatureError("v3 signature does not match")
        return "v3"
    legacy = headers.get("x-hubspot-signature")
    version = headers.get("x-hubspot-signature-version", "v1").lower()
    if not legacy:
        raise SignatureError("no HubSpot signature header")
    if version == "v1":
        expected = sign_v1(secret, body)
    elif version == "v2":
        expected = sign_v2(secret, method, uri, body)
    else:
        raise SignatureError(f"unknown signature version {version!r}")
    if not hmac.compare_digest(expected, legacy.lower()):
        raise SignatureError(f"{version} signature does not match")
    return version
