"""POST /webhooks/hubspot: HubSpot app webhooks, signature checked, enqueued for hs_change."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dealsync.observability import logger, metrics, tracer
from dealsync.services.receivers import handle_hubspot_webhook


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_hubspot_webhook(event)
