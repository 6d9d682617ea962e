"""Password hashing with argon2id, and the legacy formats imported accounts arrive with.

`verify_or_burn` always spends the cost of one verification, even when there is no account, so the
time a login takes reveals nothing about which addresses exist.

Imported hashes (bcrypt `$2a$/$2b$/$2y$`, Django `pbkdf2_sha256$`, Werkzeug `pbkdf2:sha256:` and
`scrypt:`, argon2) are verified as they are, with the `bcrypt` and `argon2-cffi` libraries and the
standard library's PBKDF2 and scrypt; `needs_rehash` is true for all but our own argon2id parameters, so
the first sign-in replaces a legacy hash with argon2id.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

import bcrypt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from entitle.constant_time import same_secret

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
# Work factors past these are refused on import: a hash that takes minutes to verify is a denial of service.
MAX_PBKDF2_ITERATIONS = 5_000_000
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024

# RFC 9106's second recommended option (memory-constrained): argon2id, t=3, m=64 MiB, p=4.
_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4, type=Type.ID)
_DUMMY_HASH = _hasher.hash("entitle-dummy-password-for-constant-time")


async def hash_password(password: str) -> str:
    # Tens of milliseconds of CPU with the GIL released: off the event loop, so other requests go on.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_or_burn(password_hash: str | None, password: str) -> bool:
    """True when the password matches; with no hash, verify a dummy so timing stays the same."""
    return await asyncio.to_thread(_verify, password_hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    if password_hash is not None and not password_hash.startswith("$argon2"):
        return verify_legacy(password_hash, password)
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    if not password_hash.startswith("$argon2id$"):
        return True
    return _hasher.check_needs_rehash(password_hash)


def hash_format(password_hash: str) -> str | None:
    """The name of a supported hash format, or None when entitle cannot verify this hash."""
    if password_hash.startswith(("$2a$", "$2b$", "$2y$")):
        return "bcrypt"
    if password_hash.startswith(("$argon2id$", "$argon2i$", "$argon2d$")):
        return "argon2"
    if password_hash.startswith("pbkdf2_sha256$") and _django_parts(password_hash) is not None:
        return "django_pbkdf2_sha256"
    if password_hash.startswith("pbkdf2:sha256") and _werkzeug_pbkdf2_parts(password_hash) is not None:
        return "werkzeug_pbkdf2_sha256"
    if password_hash.startswith("scrypt:") and _werkzeug_scrypt_parts(password_hash) is not None:
        return "werkzeug_scrypt"
    return None


def verify_legacy(password_hash: str, password: str) -> bool:
    """Check a password against an imported hash in any supported format; False for anything else."""
    secret = password.encode()
    kind = hash_format(password_hash)
    try:
        if kind == "bcrypt":
            # bcrypt reads only the first 72 bytes; the apps these hashes come from did the same.
            return bcrypt.checkpw(secret[:72], password_hash.encode())
        if kind == "argon2":
            return PasswordHasher().verify(password_hash, password)
        if kind == "django_pbkdf2_sha256":
            django = _django_parts(password_hash)
            assert django is not None
            iterations, salt, expected = django
            digest = hashlib.pbkdf2_hmac("sha256", secret, salt.encode(), iterations)
            return same_secret(base64.b64encode(digest), expected)
        if kind == "werkzeug_pbkdf2_sha256":
            werkzeug = _werkzeug_pbkdf2_parts(password_hash)
            assert werkzeug is not None
            iterations, salt, expected = werkzeug
            digest = hashlib.pbkdf2_hmac("sha256", secret, salt.encode(), iterations)
            return same_secret(digest.hex(), expected.lower())
        if kind == "werkzeug_scrypt":
            parts = _werkzeug_scrypt_parts(password_hash)
            assert parts is not None
            n, r, p, salt, expected = parts
            digest = hashlib.scrypt(
                secret, salt=salt.encode(), n=n, r=r, p=p, maxmem=MAX_SCRYPT_MEMORY * 2, dklen=64
            )
            return same_secret(digest.hex(), expected.lower())
    except (ValueError, VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return False


def _django_parts(value: str) -> tuple[int, str, str] | None:
    # pbkdf2_sha256$<iterations>$<salt>$<base64 sha256>
    parts = value.split("$")
    if len(parts) != 4 or not parts[1].isdigit() or not parts[2] or not parts[3]:
        return None
    iterations = int(parts[1])
    return (iterations, parts[2], parts[3]) if 0 < iterations <= MAX_PBKDF2_ITERATIONS else None


def _werkzeug_pbkdf2_parts(value: str) -> tuple[int, str, str] | None:
    # pbkdf2:sha256:<iterations>$<salt>$<hex>; old Werkzeug versions leave the iterations out (150000 then).
    method, _, rest = value.partition("$")
    salt, _, expected = rest.partition("$")
    pieces = method.split(":")
    if pieces[:2] != ["pbkdf2", "sha256"] or len(pieces) > 3 or not salt or not _is_hex(expected):
        return None
    iterations = int(pieces[2]) if len(pieces) == 3 and pieces[2].isdigit() else 150_000
    if len(pieces) == 3 and not pieces[2].isdigit():
        return None
    return (iterations, salt, expected) if 0 < iterations <= MAX_PBKDF2_ITERATIONS else None


def _werkzeug_scrypt_parts(value: str) -> tuple[int, int, int, str, str] | None:
    # scrypt:<n>:<r>:<p>$<salt>$<hex>
    method, _, rest = value.partition("$")
    salt, _, expected = rest.partition("$")
    pieces = method.split(":")
    if len(pieces) != 4 or not all(piece.isdigit() for piece in pieces[1:]) or not salt:
        return None
    if not _is_hex(expected):
        return None
    n, r, p = (int(piece) for piece in pieces[1:])
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * n * r > MAX_SCRYPT_MEMORY or p > 16:
        return None
    return n, r, p, salt, expected


def _is_hex(value: str) -> bool:
    return bool(value) and all(c in "0123456789abcdefABCDEF" for c in value)
