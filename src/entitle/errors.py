"""Domain errors with stable codes.

Every error a client can cause is an `EntitleError`; one handler in the web layer turns it into
`{"error": {"code": ..., "message": ...}}` with the error's HTTP status. Vendor SDK errors are
translated at the provider's edge (`raise ProviderUnavailable(...) from exc`), so nothing above a
provider package ever sees a vendor exception.

    EntitleError                    400 (code chosen by the raiser)
    ├── InvalidRequest              400 / 422
    ├── Unauthorized                401
    ├── Forbidden                   403
    ├── NotFound                    404
    ├── Conflict                    409
    ├── PayloadTooLarge             413
    ├── RateLimited                 429 (carries retry_after seconds)
    └── ProviderUnavailable         503 (a store or identity provider did not answer)
"""

from __future__ import annotations

from typing import Any


class EntitleError(Exception):
    status_code = 400
    default_code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class InvalidRequest(EntitleError):
    status_code = 422
    default_code = "invalid_request"


class Unauthorized(EntitleError):
    status_code = 401
    default_code = "unauthorized"


class Forbidden(EntitleError):
    status_code = 403
    default_code = "forbidden"


class NotFound(EntitleError):
    status_code = 404
    default_code = "not_found"


class Conflict(EntitleError):
    status_code = 409
    default_code = "conflict"


class PayloadTooLarge(EntitleError):
    status_code = 413
    default_code = "payload_too_large"


class RateLimited(EntitleError):
    status_code = 429
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, retry_after)


class ProviderUnavailable(EntitleError):
    status_code = 503
    default_code = "provider_unavailable"
