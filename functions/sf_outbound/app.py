"""POST /webhooks/salesforce/outbound-message: Salesforce Outbound Messages, acknowledged once enqueued."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dealsync.observability import logger, metrics, tracer
from dealsync.services.receivers import handle_outbound_message


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_outbound_message(event)
