"""A stand-in for the Lambda runtime's context object, with the attributes Powertools and handlers read."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from dealsync_local.template import ACCOUNT_ID, REGION


@dataclass
class ClientContext:
    client: Any = None
    custom: dict[str, Any] | None = None
    env: dict[str, Any] | None = None


@dataclass
class LambdaContext:
    """What ``awslambdaric`` passes as ``context``: same attribute names, same meaning."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = REGION
    account_id: str = ACCOUNT_ID
    identity: Any = None
    client_context: ClientContext | None = None
    tenant_id: str | None = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if not self._deadline:
            self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"{time.strftime('%Y/%m/%d')}/[{self.function_version}]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    @property
    def timed_out(self) -> bool:
        return time.monotonic() > self._deadline


def make_context(function_name: str, *, memory_limit_in_mb: int = 128, timeout_seconds: float = 3.0) -> LambdaContext:
    return LambdaContext(function_name=function_name, memory_limit_in_mb=memory_limit_in_mb,
                         timeout_seconds=timeout_seconds)
