"""HubSpotChanges queue → Salesforce opportunities (the deal events of HubSpot's app webhooks)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dealsync.observability import logger, metrics, tracer
from dealsync.services.hs_change import handle_hubspot_changes


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_hubspot_changes(event)
