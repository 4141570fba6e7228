"""Who may talk to a coordinator: URLs, loopback, and the shared bearer token (read once, never logged).

One place for the rules the coordinator (its own listen address and token, its parent link), the
node agent's reporter and the ``powerrl coordinator event|status`` client all follow:

* a URL is ``http(s)://host[:port][/prefix]``;
* plain HTTP to another machine needs a token (anyone on the path could otherwise send caps);
* a token comes from a file, else an environment variable; an unreadable or empty file is an
  error, not "no token".
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

from powerrl.errors import ConfigError

#: Environment variables holding tokens when no token file is configured.
TOKEN_ENV = "POWERRL_COORDINATOR_TOKEN"
PARENT_TOKEN_ENV = "POWERRL_PARENT_TOKEN"
#: Shortest token a coordinator serves with: 16 characters of ``secrets.token_urlsafe`` carry 96 bits.
MIN_TOKEN_CHARS = 16
TOKEN_FIX = "python -c 'import secrets; print(secrets.token_urlsafe(32))' > TOKEN_FILE; chmod 600 TOKEN_FILE"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, ``localhost`` or ``*.localhost``) only reaches this machine."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_token(url: str) -> bool:
    """Whether talking to ``url`` without a token would expose caps: plain HTTP to another machine."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback(parts.hostname or "")


def check_url(url: str, key: str, source: str | None = None) -> str:
    """``url`` without a trailing slash, or ConfigError unless it is an ``http(s)://host[:port][/prefix]`` URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(key, url, f"a coordinator URL such as http://coordinator:8470 ({exc})", source) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(key, url, "a coordinator URL starting with http:// or https:// (e.g. "
                          "http://coordinator:8470), without query or fragment", source)
    return url.rstrip("/")


def read_token(token_file: str | None, env: str, key: str, source: str | None = None,
               min_chars: int = MIN_TOKEN_CHARS) -> str | None:
    """The token in ``token_file``, else in ``$env``, else None (surrounding whitespace stripped).

    Raises:
        ConfigError: the file cannot be read or is empty, or the token is shorter than ``min_chars``
            (a coordinator serves only with a strong one; a client takes what its coordinator uses).
    """
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(key, token_file, f"a readable file holding the token ({why}); create one: {TOKEN_FIX}",
                              source) from None
        if not token:
            raise ConfigError(key, token_file, f"a file holding the token (it is empty): {TOKEN_FIX}", source)
    else:
        token = os.environ.get(env, "").strip()
        if not token:
            return None
        key = f"${env}"
    if len(token) < min_chars:
        raise ConfigError(key, f"a token of {len(token)} characters", f"at least {min_chars} characters: "
                          + TOKEN_FIX, source)
    return token
