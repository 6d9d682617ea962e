"""Encryption at rest for provider secrets we must keep (Sign in with Apple refresh tokens).

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) under `ENTITLE_ENCRYPTION_KEY`. A database dump
alone then reveals no token that could act on a person's Apple ID. In development the key is generated
on first start and kept beside the access-token key; production refuses to start without one.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from entitle.settings import RunEnvironment, Settings

# The test suite writes nothing outside its own folders: one key per test process, shared by its contexts.
_TEST_KEY = Fernet.generate_key()


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str | None:
        """The plaintext, or None when the ciphertext was made with another key or altered."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except (InvalidToken, ValueError):
            return None


def generate_key() -> str:
    return Fernet.generate_key().decode()


def secret_box_for(settings: Settings) -> SecretBox:
    """The configured key; in development, one generated on first start beside the access-token key."""
    if settings.encryption_key is not None:
        try:
            return SecretBox(settings.encryption_key.get_secret_value().encode())
        except ValueError as exc:
            raise ValueError(
                "ENTITLE_ENCRYPTION_KEY must be 32 bytes in urlsafe base64 "
                "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            ) from exc
    if settings.environment is RunEnvironment.TEST:
        return SecretBox(_TEST_KEY)
    if not settings.is_development:
        raise ValueError("ENTITLE_ENCRYPTION_KEY must be set outside development")
    key_dir = settings.jwt_private_key_path.parent if settings.jwt_private_key_path else Path(".entitle")
    path = key_dir / "encryption-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(generate_key())
    return SecretBox(path.read_text().strip().encode())
