"""The paid HTTP request tool's arguments as a pydantic model (for frameworks that want one)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PaidRequestArgs"]


class PaidRequestArgs(BaseModel):
    """Arguments of the paid HTTP request tool: the request, and how this call narrows payment."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="The URL to request (https).")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        default="GET", description="HTTP method."
    )
    body: str | None = Field(default=None, description="Request body (JSON text), if any.")
    max_amount: str | None = Field(
        default=None, description="Refuse to pay more than this for this call, e.g. '0.50 USD'."
    )
    payee: str | None = Field(default=None, description="Refuse to pay anyone but this payee.")
    purpose: str | None = Field(default=None, description="Why this is paid (recorded).")
    tags: dict[str, str] | None = Field(
        default=None, description="Labels recorded with the payment."
    )
