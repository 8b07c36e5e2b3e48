"""Lines for people: an endpoint's plan, its live state, and a smoke or keep-warm run."""

from __future__ import annotations

from collections.abc import Sequence

from mmetools.deploy.apply import ApplyResult
from mmetools.deploy.declaration import EndpointDeclaration
from mmetools.deploy.plan import LiveState, Plan
from mmetools.deploy.smoke import ModelSmoke


def declaration_lines(declaration: EndpointDeclaration) -> list[str]:
    scaling = declaration.autoscaling
    lines = [
        f"{declaration.where} {declaration.name} in {declaration.region}: "
        f"{declaration.initial_instance_count} x {declaration.instance_type}, models from "
        f"{declaration.model_data_url} (ModelCacheSetting {declaration.model_cache})",
        f"  image {declaration.image.uri} ({declaration.image.source})",
    ]
    if declaration.image.note:
        lines.append(f"  note: {declaration.image.note}")
    if scaling is not None:
        lines.append(
            f"  autoscaling {scaling.min_instances}..{scaling.max_instances} instances at "
            f"{scaling.invocations_per_instance} invocations/instance/min ({scaling.source})"
        )
    return lines


def plan_lines(plan: Plan) -> list[str]:
    lines = declaration_lines(plan.state.declaration)
    lines += [f"  differs: {line}" for line in plan.differences]
    if not plan.changes:
        return lines + [f"{plan.state.endpoint_name}: up to date, nothing to do"]
    lines += [f"  + {call.operation}: {call.why}" for call in plan.calls]
    if plan.wait:
        lines.append("  then wait for InService")
    lines += [f"  - {call.operation}: {call.why} (after InService)" for call in plan.replaced]
    lines += [
        f"  - {call.operation}: {call.why}, nothing uses it (after InService)"
        for call in plan.leftovers
    ]
    return lines


def applied_lines(result: ApplyResult) -> list[str]:
    if not result.made:
        return [f"{result.endpoint}: up to date, no change made"]
    waited = (
        f", InService after {result.seconds_to_in_service:.0f} s"
        if result.seconds_to_in_service is not None
        else ""
    )
    return [f"{result.endpoint}: {len(result.made)} changes made{waited}"]


def status_lines(declaration: EndpointDeclaration, live: LiveState) -> list[str]:
    lines = [f"{declaration.name} ({declaration.stage}, {declaration.region}): {live.status}"]
    if live.endpoint is None:
        return lines
    variant = ((live.config or {}).get("ProductionVariants") or [{}])[0]
    running = ((live.endpoint.get("ProductionVariants")) or [{}])[0]
    container = (live.model or {}).get("PrimaryContainer", {})
    lines += [
        f"  config {live.endpoint.get('EndpointConfigName')}: {variant.get('InstanceType')}, "
        f"{running.get('CurrentInstanceCount', '?')} running "
        f"(desired {running.get('DesiredInstanceCount', '?')})",
        f"  model {variant.get('ModelName')}: {container.get('Image')}, "
        f"{container.get('ModelDataUrl')}",
    ]
    if live.endpoint.get("FailureReason"):
        lines.append(f"  failure: {live.endpoint['FailureReason']}")
    target = live.scalable_target
    if target is not None:
        policy = (live.policy or {}).get("TargetTrackingScalingPolicyConfiguration", {})
        lines.append(
            f"  autoscaling {target['MinCapacity']}..{target['MaxCapacity']}, target "
            f"{policy.get('TargetValue', 'none')} invocations/instance/min"
        )
    else:
        lines.append("  autoscaling: none registered")
    return lines + _leftover_lines(live)


def _leftover_lines(live: LiveState) -> list[str]:
    config = (live.endpoint or {}).get("EndpointConfigName")
    model = ((live.config or {}).get("ProductionVariants") or [{}])[0].get("ModelName")
    unused = [name for name in live.own_configs + live.own_models if name not in (config, model)]
    if not unused:
        return []
    return [f"  not used by the endpoint: {', '.join(unused)} (`endpoint plan` says which go)"]


def smoke_lines(endpoint: str, results: Sequence[ModelSmoke], warm_only: bool) -> list[str]:
    lines = []
    for result in results:
        state = "passed" if result.passed else "FAILED"
        cold = f"{result.cold_ms:.0f} ms" if result.cold_ms is not None else "-"
        warm = f", warm p50 {result.warm_ms:.0f} ms" if result.warm_ms is not None else ""
        what = "first call" if warm_only else f"{len(result.cases)} fixtures, cold"
        lines.append(f"{endpoint} {result.target_model}: {state} ({what} {cold}{warm})")
        lines += [f"  {line}" for line in result.failures()]
    return lines
