"""Deal pipelines and stages: HubSpot's default pipeline, the stage probability rules and the
per-tier pipeline limit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dealsync_local.hubspot.common import HubSpotError, iso

# Deal pipelines per subscription tier. The reference (§1.4, §3.5) could not confirm the numbers;
# these are HubSpot's published product limits (Free 1, Starter 2, Professional 15, Enterprise 100)
# and can be overridden with the ``pipeline_limit`` config key.
PIPELINE_LIMITS = {"free": 1, "starter": 2, "professional": 15, "enterprise": 100}

DEFAULT_STAGES = (
    ("appointmentscheduled", "Appointment Scheduled", "0.2", False),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", False),
    ("presentationscheduled", "Presentation Scheduled", "0.6", False),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", False),
    ("contractsent", "Contract Sent", "0.9", False),
    ("closedwon", "Closed Won", "1.0", True),
    ("closedlost", "Closed Lost", "0.0", True),
)


@dataclass
class Stage:
    id: str
    label: str
    display_order: int
    probability: str  # "0.2": HubSpot returns metadata values as strings
    is_closed: bool
    created_ms: int
    updated_ms: int
    archived: bool = False
    archived_ms: int | None = None

    @property
    def is_won(self) -> bool:
        return self.is_closed and float(self.probability) == 1.0

    @property
    def is_lost(self) -> bool:
        return self.is_closed and float(self.probability) == 0.0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "label": self.label, "displayOrder": self.display_order,
            "metadata": {"isClosed": "true" if self.is_closed else "false", "probability": self.probability},
            "createdAt": iso(self.created_ms), "updatedAt": iso(self.updated_ms), "archived": self.archived,
            "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
        }
        if self.archived_ms is not None:
            body["archivedAt"] = iso(self.archived_ms)
        return body


@dataclass
class Pipeline:
    id: str
    label: str
    display_order: int
    created_ms: int
    updated_ms: int
    stages: list[Stage] = field(default_factory=list)
    archived: bool = False
    archived_ms: int | None = None

    def active_stages(self) -> list[Stage]:
        return sorted((s for s in self.stages if not s.archived), key=lambda s: (s.display_order, s.label))

    def stage(self, stage_id: str) -> Stage | None:
        for candidate in self.stages:
            if candidate.id == stage_id and not candidate.archived:
                return candidate
        return None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "label": self.label, "displayOrder": self.display_order,
            "stages": [s.to_json() for s in self.active_stages()],
            "createdAt": iso(self.created_ms), "updatedAt": iso(self.updated_ms), "archived": self.archived,
        }
        if self.archived_ms is not None:
            body["archivedAt"] = iso(self.archived_ms)
        return body


def default_pipeline(created_ms: int) -> Pipeline:
    pipeline = Pipeline("default", "Sales Pipeline", 0, created_ms, created_ms)
    pipeline.stages = [Stage(sid, label, order, prob, closed, created_ms, created_ms)
                       for order, (sid, label, prob, closed) in enumerate(DEFAULT_STAGES)]
    return pipeline


def _bad(message: str, sub_category: str | None = None) -> HubSpotError:
    return HubSpotError(400, message, "VALIDATION_ERROR", sub_category=sub_category)


def parse_probability(metadata: Any) -> tuple[str, bool]:
    """``(probability, isClosed)`` from a stage's ``metadata``, by HubSpot's rules for deal stages:
    probability required, between 0.0 and 1.0 in steps of 0.1; a closed stage is won (1.0) or lost
    (0.0)."""
    if not isinstance(metadata, dict) or metadata.get("probability") in (None, ""):
        raise _bad("Deal stages require metadata.probability: a number between 0.0 and 1.0 in increments "
                   "of 0.1, e.g. {\"probability\": 0.5}", "PipelineError.STAGE_PROBABILITY_REQUIRED")
    raw = metadata["probability"]
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise _bad(f"Stage probability {raw!r} is not a number", "PipelineError.INVALID_PROBABILITY") from None
    tenths = value * 10
    if not 0.0 <= value <= 1.0 or abs(tenths - round(tenths)) > 1e-9:
        raise _bad(f"Stage probability {raw} must be between 0.0 and 1.0 in increments of 0.1",
                   "PipelineError.INVALID_PROBABILITY")
    closed_raw = metadata.get("isClosed", False)
    is_closed = closed_raw is True or str(closed_raw).lower() == "true"
    if is_closed and round(tenths) not in (0, 10):
        raise _bad("A closed stage must have probability 1.0 (closed won) or 0.0 (closed lost)",
                   "PipelineError.INVALID_PROBABILITY")
    return f"{round(tenths) / 10:.1f}", is_closed


def build_stage(body: Any, position: int, now: int, new_id: Callable[[], str],
                taken_ids: set[str]) -> Stage:
    if not isinstance(body, dict):
        raise _bad("Each stage must be an object with label, displayOrder and metadata")
    label = body.get("label")
    if not isinstance(label, str) or not label.strip():
        raise _bad("Stage label is required")
    probability, is_closed = parse_probability(body.get("metadata"))
    stage_id = body.get("stageId")
    if stage_id:
        stage_id = str(stage_id)
        if stage_id in taken_ids:
            raise HubSpotError(409, f"A stage with id {stage_id} already exists", "CONFLICT")
    else:
        stage_id = new_id()
    order = body.get("displayOrder", position)
    return Stage(stage_id, label, int(order) if order is not None else position, probability, is_closed,
                 now, now)


def check_stage_labels(stages: list[Stage]) -> None:
    seen: set[str] = set()
    for stage in stages:
        if stage.archived:
            continue
        key = stage.label.strip().lower()
        if key in seen:
            raise _bad(f"Stage labels must be unique within a pipeline; '{stage.label}' is used twice",
                       "PipelineError.DUPLICATE_STAGE_LABEL")
        seen.add(key)
