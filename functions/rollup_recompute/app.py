"""RollupQueue → contact rollups and lifecycle stage in HubSpot (incremental and the nightly full recompute)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dealsync.observability import logger, metrics, tracer
from dealsync.services.rollup_recompute import handle_rollup_messages


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_rollup_messages(event, context.get_remaining_time_in_millis)
