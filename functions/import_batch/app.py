"""ImportQueue → the import coordinator (job start) and chunk writers (DESIGN 1.8)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dealsync.observability import logger, metrics, tracer
from dealsync.services.import_batch import handle_import_queue


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_import_queue(event)
