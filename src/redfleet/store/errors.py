"""Errors the fleet store raises. Each message names what is wrong and what to do; none contains a secret."""

from __future__ import annotations


class StoreError(RuntimeError):
    """Any failure of the fleet store (database unreachable, migration failed, ...)."""


class NotFoundError(StoreError, LookupError):
    """A node, endpoint or credential that the store does not hold."""


class CredentialKeyError(StoreError):
    """The encryption key is missing, malformed, or is not the one the stored credentials were written with."""


class PinMismatchError(StoreError):
    """An operator tried to accept a certificate fingerprint other than the one awaiting acceptance."""
