"""What MLOps services refuse, so every door answers the same way (API: 400/404/409; admin: a
message)."""

from __future__ import annotations


class MlopsInvalid(Exception):
    """Bad input, named by field: nothing was written (400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class MlopsConflict(MlopsInvalid):
    """The request is valid but the row is not in a state that allows it (409)."""
