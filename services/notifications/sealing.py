"""Webhook secrets at rest: sealed with Fernet (AES-128-CBC and HMAC-SHA256, from ``cryptography``) under
the key of ``WARMBEE_NOTIFY_SECRET_KEY``. The secret is shown once, when the subscription is made; the
database only ever holds it sealed. A new key means new subscriptions (rotation by a new subscription)."""

from __future__ import annotations

from cryptography.fernet import Fernet

from libs.platform.settings import LOCAL_NOTIFY_SECRET_KEY, Settings


class Sealer:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def of(cls, settings: Settings) -> Sealer:
        """The sealer of the settings' key; the public local key is refused in production."""
        if settings.env == "production" and settings.notify_secret_key == LOCAL_NOTIFY_SECRET_KEY:
            raise ValueError("WARMBEE_NOTIFY_SECRET_KEY must be set in production: the local key is public")
        try:
            return cls(settings.notify_secret_key)
        except ValueError as exc:
            raise ValueError(
                "WARMBEE_NOTIFY_SECRET_KEY must be a Fernet key: 32 bytes in url-safe base64 "
                "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            ) from exc

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def unseal(self, sealed: bytes) -> str:
        return self._fernet.decrypt(sealed).decode()
