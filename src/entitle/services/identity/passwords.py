"""Password hashing with argon2id, and the legacy formats imported accounts arrive with.

Imported hashes (bcrypt `$2a$/$2b$/$2y$`, Django `pbkdf2_sha256$`, Werkzeug `pbkdf2:sha256:` and
`scrypt:`, argon2) are verified as they are, with the `bcrypt` and `argon2-cffi` libraries and the
standard library's PBKDF2 and scrypt; `needs_rehash` is true for all but our own argon2id parameters, so
the first sign-in replaces a legacy hash with argon2id.

Work factors are bounded (the `MAX_*` limits below, listed in docs/identity.md): a hash that takes
seconds to check lets anyone who knows the address burn the server's CPU with wrong passwords. An import
refuses a hash over the bounds or malformed (`hash_problem`), and a stored one over them (imported before
the bounds existed) is never verified: its sign-in fails like a wrong password, at the cost of one.

Timing: a sign-in costs the same whoever the address belongs to (`verify_with_parity`). Every attempt
runs one verification per *profile* (format and work parameters) among the stored hashes: the account's
own hash in its profile's slot, a dummy hash of that profile in every other slot. An unknown address,
an account with our argon2id and one imported with bcrypt-12 all run exactly the same list. A single
dummy of one representative profile would not do: whichever format it matched, accounts in the other
formats would stand out. The price is that a sign-in costs the sum of the stored profiles (usually one
or two), and it falls back to one argon2id check as imported hashes are replaced at first sign-in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import bcrypt
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from entitle.constant_time import same_secret

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024

# Work factors past these are refused on import and never verified when stored: each admits the
# defaults of every framework we import from (docs/identity.md lists them), at about a second at most.
# bcrypt: Laravel, Rails, Devise and Django use 10-12; 14 is four times 12.
MIN_BCRYPT_COST = 4
MAX_BCRYPT_COST = 14
# argon2: memory in KiB (256 MiB is libsodium's "moderate"; PHP and argon2-cffi use 64 MiB, Django
# 100 MiB), passes, lanes; and memory x passes, which is what the time grows with.
MAX_ARGON2_MEMORY_KIB = 256 * 1024
MAX_ARGON2_TIME_COST = 10
MAX_ARGON2_PARALLELISM = 16
MAX_ARGON2_WORK_KIB = 1024 * 1024
# PBKDF2-SHA256 (Django 5.2: 1,000,000; Django 6.0: 1,200,000; Werkzeug 3.1: 1,000,000).
MAX_PBKDF2_ITERATIONS = 3_000_000
# scrypt: memory 128 x n x r bytes (Werkzeug's default n=32768, r=8, p=1 is 32 MiB), and p runs that
# many times over, so memory x p bounds the time.
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
MAX_SCRYPT_PARALLELISM = 16
MAX_SCRYPT_WORK = 1024 * 1024 * 1024

# RFC 9106's second recommended option (memory-constrained): argon2id, t=3, m=64 MiB, p=4.
_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4, type=Type.ID)
_DUMMY_PASSWORD = "entitle-dummy-password-for-constant-time"
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_ARGON2_PREFIXES = ("$argon2id$", "$argon2i$", "$argon2d$")


@dataclass(frozen=True, order=True)
class HashProfile:
    """What verifying a hash costs: its format and work parameters (never its salt or digest)."""

    format: str
    parameters: tuple[int, ...]


# What `hash_password` makes today; always one of the profiles a sign-in pays for.
OWN_PROFILE = HashProfile("argon2", (Type.ID.value, 64 * 1024, 3, 4))


async def hash_password(password: str) -> str:
    # Tens of milliseconds of CPU with the GIL released: off the event loop, so other requests go on.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_or_burn(password_hash: str | None, password: str) -> bool:
    """True when the password matches; with no usable hash, verify a dummy so timing stays the same."""
    return await verify_with_parity(password_hash, password, (OWN_PROFILE,))


async def verify_with_parity(
    password_hash: str | None, password: str, profiles: Sequence[HashProfile]
) -> bool:
    """True when the password matches `password_hash` (None: no account), after running one
    verification for each of `profiles` (the stored hashes' profiles), so the cost is the same for every
    address; see the module's docstring."""
    return await asyncio.to_thread(_verify_with_parity, password_hash, password, profiles)


def _verify_with_parity(password_hash: str | None, password: str, profiles: Sequence[HashProfile]) -> bool:
    own: HashProfile | None = None
    if password_hash is not None:
        analysed = _analyse(password_hash)
        if isinstance(analysed, HashProfile):
            own = analysed
        else:
            # Stored before the bounds existed: checking it could take minutes, so it is not checked.
            log.warning(
                "a stored password hash was not verified and its sign-in failed: it %s; "
                "ask the person to reset their password (docs/identity.md, 'Imported hashes')",
                analysed,
            )
    slots = set(profiles) | {OWN_PROFILE}
    if own is not None:
        # A profile imported since the stored profiles were last read: checked all the same.
        slots.add(own)
    matches = False
    for profile in sorted(slots):
        if profile == own and password_hash is not None:
            matches = check_hash(password_hash, password)
        else:
            check_hash(dummy_hash(profile), password)
    return matches


def needs_rehash(password_hash: str) -> bool:
    if not password_hash.startswith("$argon2id$"):
        return True
    return _hasher.check_needs_rehash(password_hash)


def hash_format(password_hash: str) -> str | None:
    """The name of a supported hash format, or None when entitle cannot or will not verify this hash."""
    analysed = _analyse(password_hash)
    return analysed.format if isinstance(analysed, HashProfile) else None


def hash_problem(password_hash: str) -> str | None:
    """Why this hash cannot be imported (a sentence that follows "password_hash"), or None when it can."""
    analysed = _analyse(password_hash)
    return None if isinstance(analysed, HashProfile) else analysed


def profile_of(password_hash: str) -> HashProfile | None:
    """The hash's profile, or None when it is malformed, unsupported or over the bounds."""
    analysed = _analyse(password_hash)
    return analysed if isinstance(analysed, HashProfile) else None


def verify_legacy(password_hash: str, password: str) -> bool:
    """Check a password against an imported hash in any supported format; False for anything else."""
    return check_hash(password_hash, password)


def check_hash(password_hash: str, password: str) -> bool:
    """One verification of `password` against a hash within the bounds; False for any other hash."""
    profile = _analyse(password_hash)
    if not isinstance(profile, HashProfile):
        return False
    secret = password.encode()
    try:
        if profile.format == "bcrypt":
            # bcrypt reads only the first 72 bytes; the apps these hashes come from did the same.
            return bcrypt.checkpw(secret[:72], password_hash.encode())
        if profile.format == "argon2":
            return PasswordHasher().verify(password_hash, password)
        if profile.format == "pbkdf2_sha256":
            (iterations,) = profile.parameters
            salt, expected = password_hash.split("$")[-2:]
            digest = hashlib.pbkdf2_hmac("sha256", secret, salt.encode(), iterations)
            if password_hash.startswith("pbkdf2_sha256$"):
                return same_secret(base64.b64encode(digest), expected)
            return same_secret(digest.hex(), expected.lower())
        if profile.format == "scrypt":
            n, r, p = profile.parameters
            salt, expected = password_hash.split("$")[-2:]
            digest = hashlib.scrypt(
                secret, salt=salt.encode(), n=n, r=r, p=p, maxmem=MAX_SCRYPT_MEMORY * 2, dklen=64
            )
            return same_secret(digest.hex(), expected.lower())
    except (ValueError, VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return False


@functools.lru_cache(maxsize=64)
def dummy_hash(profile: HashProfile) -> str:
    """A hash of a fixed password with this profile, made once: verifying it costs what the profile costs."""
    secret = _DUMMY_PASSWORD.encode()
    salt = secrets.token_hex(8)
    if profile.format == "bcrypt":
        (cost,) = profile.parameters
        return bcrypt.hashpw(secret, bcrypt.gensalt(rounds=cost, prefix=b"2b")).decode()
    if profile.format == "argon2":
        kind, memory, time_cost, lanes = profile.parameters
        hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory, parallelism=lanes, type=Type(kind))
        return hasher.hash(_DUMMY_PASSWORD)
    if profile.format == "pbkdf2_sha256":
        (iterations,) = profile.parameters
        digest = hashlib.pbkdf2_hmac("sha256", secret, salt.encode(), iterations)
        return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"
    if profile.format == "scrypt":
        n, r, p = profile.parameters
        digest = hashlib.scrypt(
            secret, salt=salt.encode(), n=n, r=r, p=p, maxmem=MAX_SCRYPT_MEMORY * 2, dklen=64
        )
        return f"scrypt:{n}:{r}:{p}${salt}${digest.hex()}"
    raise ValueError(f"no such hash profile: {profile}")


_SUPPORTED = (
    "is not a supported hash (bcrypt $2a$/$2b$/$2y$, argon2, Django pbkdf2_sha256$, "
    "Werkzeug pbkdf2:sha256: or scrypt:)"
)


def _analyse(value: str) -> HashProfile | str:
    """The hash's profile when it is well formed and within the bounds, else why not."""
    if value.startswith(("$2a$", "$2b$", "$2y$")):
        return _bcrypt_profile(value)
    if value.startswith(_ARGON2_PREFIXES):
        return _argon2_profile(value)
    if value.startswith("pbkdf2_sha256$"):
        return _django_profile(value)
    if value.startswith("pbkdf2:sha256"):
        return _werkzeug_pbkdf2_profile(value)
    if value.startswith("scrypt:"):
        return _werkzeug_scrypt_profile(value)
    return _SUPPORTED


def _bcrypt_profile(value: str) -> HashProfile | str:
    match = _BCRYPT.fullmatch(value)
    if match is None:
        return "is not a well-formed bcrypt hash ($2b$<cost>$ and 53 characters of salt and digest)"
    cost = int(match.group(1))
    if not MIN_BCRYPT_COST <= cost <= MAX_BCRYPT_COST:
        return f"has bcrypt cost {cost}, outside {MIN_BCRYPT_COST}-{MAX_BCRYPT_COST}"
    return HashProfile("bcrypt", (cost,))


def _argon2_profile(value: str) -> HashProfile | str:
    try:
        found = extract_parameters(value)
    except (InvalidHashError, ValueError):
        return "is not a well-formed argon2 hash ($argon2id$v=19$m=..,t=..,p=..$salt$digest)"
    over = []
    if found.memory_cost > MAX_ARGON2_MEMORY_KIB:
        over.append(f"memory m={found.memory_cost} KiB over {MAX_ARGON2_MEMORY_KIB}")
    if found.time_cost > MAX_ARGON2_TIME_COST:
        over.append(f"passes t={found.time_cost} over {MAX_ARGON2_TIME_COST}")
    if found.parallelism > MAX_ARGON2_PARALLELISM:
        over.append(f"lanes p={found.parallelism} over {MAX_ARGON2_PARALLELISM}")
    if not over and found.memory_cost * found.time_cost > MAX_ARGON2_WORK_KIB:
        over.append(f"memory x passes m*t={found.memory_cost * found.time_cost} over {MAX_ARGON2_WORK_KIB}")
    if over:
        return "has argon2 " + ", ".join(over)
    if found.time_cost < 1 or found.parallelism < 1 or found.memory_cost < 8 * found.parallelism:
        return "has argon2 parameters argon2 itself refuses"
    return HashProfile("argon2", (found.type.value, found.memory_cost, found.time_cost, found.parallelism))


def _pbkdf2_iterations(text: str) -> HashProfile | str:
    if not (text.isascii() and text.isdigit()):
        return "has PBKDF2 iterations that are not a number"
    iterations = int(text)
    if not 0 < iterations <= MAX_PBKDF2_ITERATIONS:
        return f"has {iterations} PBKDF2 iterations, outside 1-{MAX_PBKDF2_ITERATIONS}"
    return HashProfile("pbkdf2_sha256", (iterations,))


def _django_profile(value: str) -> HashProfile | str:
    # pbkdf2_sha256$<iterations>$<salt>$<base64 sha256>
    parts = value.split("$")
    if len(parts) != 4 or not parts[2] or not _is_base64_digest(parts[3]):
        return "is not a well-formed Django hash (pbkdf2_sha256$<iterations>$<salt>$<base64>)"
    return _pbkdf2_iterations(parts[1])


def _werkzeug_pbkdf2_profile(value: str) -> HashProfile | str:
    # pbkdf2:sha256:<iterations>$<salt>$<hex>; old Werkzeug versions leave the iterations out (150000 then).
    parts = value.split("$")
    pieces = parts[0].split(":")
    if (
        len(parts) != 3
        or pieces[:2] != ["pbkdf2", "sha256"]
        or len(pieces) > 3
        or not parts[1]
        or not _is_hex(parts[2])
    ):
        return "is not a well-formed Werkzeug hash (pbkdf2:sha256:<iterations>$<salt>$<hex>)"
    return _pbkdf2_iterations(pieces[2] if len(pieces) == 3 else "150000")


def _werkzeug_scrypt_profile(value: str) -> HashProfile | str:
    # scrypt:<n>:<r>:<p>$<salt>$<hex>
    parts = value.split("$")
    pieces = parts[0].split(":")
    if (
        len(parts) != 3
        or len(pieces) != 4
        or not all(piece.isascii() and piece.isdigit() for piece in pieces[1:])
        or not parts[1]
        or not _is_hex(parts[2])
    ):
        return "is not a well-formed Werkzeug hash (scrypt:<n>:<r>:<p>$<salt>$<hex>)"
    n, r, p = (int(piece) for piece in pieces[1:])
    if n < 2 or n & (n - 1) or r < 1 or p < 1:
        return "has scrypt parameters scrypt itself refuses (n a power of 2, r and p at least 1)"
    if 128 * n * r > MAX_SCRYPT_MEMORY or p > MAX_SCRYPT_PARALLELISM or 128 * n * r * p > MAX_SCRYPT_WORK:
        return (
            f"has scrypt n={n}, r={r}, p={p} over the bounds (128*n*r at most {MAX_SCRYPT_MEMORY} bytes, "
            f"p at most {MAX_SCRYPT_PARALLELISM}, 128*n*r*p at most {MAX_SCRYPT_WORK})"
        )
    return HashProfile("scrypt", (n, r, p))


def _is_base64_digest(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _is_hex(value: str) -> bool:
    return bool(value) and all(c in "0123456789abcdefABCDEF" for c in value)
