"""Encryption of stored secrets with a rotatable keyring (Fernet: AES-128-CBC + HMAC-SHA256).

``KIJKO_ENCRYPTION_KEYS`` is a comma-separated list of Fernet keys; the first encrypts, all
decrypt, so a new key is rotated in by putting it first and re-encrypting at leisure.
"""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def digest_secret(secret: str) -> bytes:
    """What is stored of a random secret (an OAuth state, a hand-off code, an invitation token)
    to find it again: its SHA-256. They carry 256 random bits, so a fast hash hides them at rest
    as well as a slow one would."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class DecryptionFailed(Exception):
    """No key of the keyring opens this ciphertext."""


class Keyring:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("the keyring needs at least one key")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    @classmethod
    def from_setting(cls, value: str) -> Keyring:
        return cls([key.strip() for key in value.split(",") if key.strip()])

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise DecryptionFailed() from None

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the primary key."""
        return self._fernet.rotate(ciphertext.encode()).decode()
