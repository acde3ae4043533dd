"""URL helpers shared by every backend, chiefly: credentials never reach a log, error or repr."""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigurationError

__all__ = [
    "SECRET_QUERY_KEYS",
    "query_options",
    "redact_secrets",
    "redact_url",
    "scheme_of",
    "split_url",
]

SECRET_QUERY_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "secret",
        "token",
        "auth_token",
        "sasl_password",
        "aws_secret_access_key",
        "secret_key",
        "access_token",
        "nkey",
        "creds",
        "jwt",
    }
)
_USERINFO = re.compile(r"(//[^/@:]*):([^/@]*)@")


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` (``""`` when it has none)."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def redact_url(url: str) -> str:
    """``url`` with any password, token or secret replaced by ``***``.

    A URL that does not parse is still scrubbed of ``user:password@`` by a textual rule, so that a
    malformed URL cannot leak through an error message either.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, sep, _password = userinfo.partition(":")
            if sep or (user and not parts.password and parts.scheme.startswith("nats")):
                # nats://TOKEN@host carries a token in the user part.
                netloc = (f"{user}:***" if sep else "***") + "@" + host
        query = parts.query
        if query:
            pairs = [
                (k, "***" if k.lower() in SECRET_QUERY_KEYS else v)
                for k, v in parse_qsl(query, keep_blank_values=True)
            ]
            query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return _USERINFO.sub(r"\1:***@", url)


def query_options(url: str) -> dict[str, str]:
    """The query string of ``url`` as a dict (last value wins)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def redact_secrets(text: str, *secrets: str | None) -> str:
    """``text`` with each of ``secrets`` (a password or token the transport knows) replaced by
    ``***``: for a driver's own message, which may quote what it was given. Empty or ``None``
    secrets are skipped (replacing ``""`` would mangle the text)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def split_url(url: str, backend: str, schemes: Collection[str]) -> SplitResult:
    """``url``'s parts, once it is known to be one of ``backend``'s URLs.

    :raises ConfigurationError: for a URL that does not parse or has another scheme; the message
        shows the URL redacted and the schemes the backend takes.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"malformed {backend} URL {shown!r}: {exc}") from None
    if parts.scheme.lower() not in schemes:
        listed = ", ".join(f"{scheme}://" for scheme in schemes)
        raise ConfigurationError(f"not a {backend} URL: {shown!r} (use {listed})")
    return parts
