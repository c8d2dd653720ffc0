"""One Logger, Tracer and Metrics for the whole layer (Powertools reads its settings from env).

Log record ids, counts and categories only: never e-mails, names or descriptions.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="dealsync")
tracer = Tracer(service="dealsync")
metrics = Metrics(namespace="Dealsync", service="dealsync")
