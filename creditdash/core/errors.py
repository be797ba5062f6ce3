"""Domain errors. Services raise these; the HTTP layer and the UI translate them in one place."""

from __future__ import annotations


class CreditdashError(Exception):
    """Base class: a refusal with a message a user can read."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(CreditdashError):
    code = "invalid_request"


class NotFound(CreditdashError):
    code = "not_found"


class Forbidden(CreditdashError):
    code = "forbidden"


class Conflict(CreditdashError):
    code = "conflict"


class InsufficientCredits(CreditdashError):
    code = "insufficient_credits"


class IdempotencyConflict(Conflict):
    """The idempotency key was already used for a different operation."""

    code = "idempotency_conflict"


class AlreadyResolved(Conflict):
    """A hold was already posted, voided or expired."""

    code = "already_resolved"


class AuthenticationFailed(CreditdashError):
    code = "authentication_failed"


class TooManyAttempts(AuthenticationFailed):
    """Sign-in refused for a while after repeated failures; the password was not checked."""

    code = "too_many_attempts"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SpendCapReached(CreditdashError):
    """A hold would take an API key past its monthly spend cap."""

    code = "spend_cap_reached"


class BudgetExceeded(CreditdashError):
    """A hold would take a workspace past its hard monthly budget."""

    code = "budget_exceeded"
