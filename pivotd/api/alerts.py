"""Alerts and alert rules: list/acknowledge alerts; create, list, get, replace,
patch and delete rules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pivotd.alerts.rules import RuleSpec
from pivotd.api.body import openapi_body, parse_lenient, read_json_body, read_model
from pivotd.api.deps import ServicesDep
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, model_response
from pivotd.errors import NotFound, ValidationFailed, validation_failed
from shared.models.alerts import AlertList, AlertPublic, AlertRuleList, AlertRulePublic, AlertSeverity, AlertStatus

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
IdPath = Annotated[str, Path(max_length=64)]


class Acknowledge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    acknowledged_by: Annotated[str, Field(max_length=256)] | None = None
    notes: Annotated[str, Field(max_length=4000)] | None = None


def _rule(view: dict[str, Any], status_code: int = 200) -> Response:
    """A rule's view as its model: keys the rule leaves unset stay absent."""
    return model_response(AlertRulePublic.model_validate(view), status_code, exclude_unset=True)


def _alert(alert: dict[str, Any]) -> Response:
    return model_response(AlertPublic.model_validate(alert), exclude_unset=True)


def _changes_schema() -> dict[str, Any]:
    """A rule's fields, none required: what a PATCH merges into the rule before validating it as a whole."""
    schema = RuleSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)  # the same definitions as `AlertRule`'s, which the document holds
    schema.pop("required", None)
    return schema | {"title": "AlertRulePatch"}


async def _rule_body(request: Request, services: ServicesDep, base: dict[str, Any] | None = None) -> RuleSpec:
    if base is None:
        return await read_model(request, RuleSpec, services.settings.max_body_bytes)
    changes = parse_lenient(await read_json_body(request, services.settings.max_body_bytes))
    if not isinstance(changes, dict):
        raise ValidationFailed("body: must be a JSON object of the fields to change")
    try:
        return RuleSpec.model_validate(base | changes)
    except ValidationError as exc:
        raise validation_failed(exc) from None


@router.get(
    "",
    response_model=AlertList,
    summary="List alerts, newest first",
    responses=error_responses(STRUCTURED_ERRORS, 401, 422),
)
async def list_alerts(
    services: ServicesDep,
    status: AlertStatus | None = None,
    severity: AlertSeverity | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    alerts = await services.store.monitoring.alerts(status=status, severity=severity, limit=limit)
    return model_response(AlertList(alerts=[AlertPublic.model_validate(alert) for alert in alerts]), exclude_unset=True)


@router.post(
    "/rules",
    status_code=201,
    response_model=AlertRulePublic,
    summary="Create an alert rule",
    openapi_extra=openapi_body("AlertRule", RuleSpec, "A rule: name, metric, condition, threshold, ..."),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 413, 415, 422),
)
async def create_rule(request: Request, services: ServicesDep) -> Response:
    spec = await _rule_body(request, services)
    return _rule(await services.alerts.put_rule(spec), 201)


@router.get(
    "/rules",
    response_model=AlertRuleList,
    summary="List alert rules (built-in ones included)",
    responses=error_responses(STRUCTURED_ERRORS, 401),
)
async def list_rules(services: ServicesDep) -> Response:
    rules = [AlertRulePublic.model_validate(view) for view in services.alerts.list_rules()]
    return model_response(AlertRuleList(rules=rules), exclude_unset=True)


@router.get(
    "/rules/{rule_id}",
    response_model=AlertRulePublic,
    summary="One alert rule",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404),
)
async def get_rule(rule_id: IdPath, services: ServicesDep) -> Response:
    return _rule(services.alerts.view(rule_id))


@router.put(
    "/rules/{rule_id}",
    response_model=AlertRulePublic,
    summary="Replace an alert rule",
    openapi_extra=openapi_body("AlertRule", RuleSpec),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 404, 413, 415, 422),
)
async def replace_rule(rule_id: IdPath, request: Request, services: ServicesDep) -> Response:
    services.alerts.view(rule_id)  # 404 before reading the body
    spec = await _rule_body(request, services)
    return _rule(await services.alerts.put_rule(spec, rule_id))


@router.patch(
    "/rules/{rule_id}",
    response_model=AlertRulePublic,
    summary='Change some fields of an alert rule (for example `{"enabled": false}`)',
    openapi_extra=openapi_body("AlertRulePatch", _changes_schema(), "Fields of the rule to change"),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 404, 413, 415, 422),
)
async def patch_rule(rule_id: IdPath, request: Request, services: ServicesDep) -> Response:
    services.alerts.view(rule_id)  # 404 before reading the body
    spec = await _rule_body(request, services, services.alerts.rules[rule_id].spec.model_dump(mode="json"))
    return _rule(await services.alerts.put_rule(spec, rule_id))


@router.delete(
    "/rules/{rule_id}",
    status_code=204,
    summary="Delete an alert rule; its open alerts are resolved",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404),
)
async def delete_rule(rule_id: IdPath, services: ServicesDep) -> Response:
    await services.alerts.delete_rule(rule_id)
    return Response(status_code=204)


@router.get(
    "/{alert_id}",
    response_model=AlertPublic,
    summary="One alert",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404),
)
async def get_alert(alert_id: IdPath, services: ServicesDep) -> Response:
    alert = await services.store.monitoring.alert(alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id!r} not found")
    return _alert(alert)


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertPublic,
    summary="Acknowledge an active alert",
    description="It stays open (and still resolves by itself when its condition clears).",
    openapi_extra=openapi_body("Acknowledge", Acknowledge, "Who acknowledges, and notes"),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 404, 409, 415, 422),
)
async def acknowledge(alert_id: IdPath, request: Request, services: ServicesDep) -> Response:
    ack = Acknowledge()
    if request.headers.get("content-length", "0") != "0":
        ack = await read_model(request, Acknowledge, services.settings.max_body_bytes)
    alert = await services.alerts.acknowledge(alert_id, ack.acknowledged_by, ack.notes)
    return _alert(alert)
