"""Password hashes: scrypt (hashlib, as the original used) with a salt per user, in a self-describing string.

``scrypt$<log2 n>$<r>$<p>$<salt hex>$<hash hex>``: the parameters travel with each hash, so they can be
raised later without locking out the users hashed before.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

_LOG2_N, _R, _P = 14, 8, 1  # 16 MiB and about 50 ms a hash: OWASP's minimum for scrypt
_KEY_LENGTH = 64
_SALT_BYTES = 16


def hash_password(password: str) -> str:
    """A new salted scrypt hash of ``password``."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _LOG2_N, _R, _P)
    return f"scrypt${_LOG2_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from; False for a malformed ``stored``."""
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = _scrypt(password, bytes.fromhex(salt), int(log2_n), int(r), int(p))
        return hmac.compare_digest(candidate, bytes.fromhex(digest))
    except ValueError:
        return False


async def hash_password_async(password: str) -> str:
    """``hash_password`` off the event loop: scrypt is meant to be slow."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password: str, stored: str) -> bool:
    """``verify_password`` off the event loop."""
    return await asyncio.to_thread(verify_password, password, stored)


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * n * r * p, dklen=_KEY_LENGTH
    )
