"""The InferenceSet admission validator: a child Workspace made from the template, judged as a Workspace is.

Errors name the set's own fields (`spec.template.inference.preset.name`, `spec.labelSelector`, ...), so a bad
template is refused at `kubectl apply` with the same words a bad Workspace gets.
"""

from __future__ import annotations

import dataclasses

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from kaito.api.fielderrors import FieldError
from kaito.api.inferenceset import MAX_NAME_LENGTH, InferenceSet, child_workspace, parse_duration
from kaito.api.workspace import KIND as WORKSPACE_KIND
from kaito.webhook.server import AdmissionRequest, Validator, Verdict

PATH = "/validate-inferenceset"
WEBHOOK_NAME = "validation.inferenceset.kaito.sh"
CONFIGURATION_NAME = "kaito-inferenceset-validating-webhook-configuration"
RULES = [
    {
        "apiGroups": ["kaito.sh"],
        "apiVersions": ["v1alpha1", "v1beta1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["inferencesets"],
        "scope": "Namespaced",
    }
]

# A Workspace's field path -> the set's path to the same field.
_PREFIXES = (
    ("resource.labelSelector", "spec.labelSelector"),
    ("resource", "spec.template.resource"),
    ("inference", "spec.template.inference"),
    ("metadata.annotations", "spec.template.metadata.annotations"),
    ("metadata.labels", "spec.template.metadata.labels"),
)


def set_path(path: str) -> str:
    """Where a child Workspace's field `path` comes from in its set."""
    if not path:
        return "spec.template"
    for child, parent in _PREFIXES:
        if path == child or path.startswith((child + ".", child + "[")):
            return parent + path[len(child) :]
    return path


def inferenceset_validator(workspace: Validator) -> Validator:
    """A validator for `WebhookServer` that runs `workspace` (the Workspace validator) on the set's child."""

    async def validate(request: AdmissionRequest) -> Verdict:
        old_spec = (request.old_object or {}).get("spec")
        if request.operation == "UPDATE" and old_spec == (request.object or {}).get("spec"):
            return Verdict()  # metadata only (the gateway's demand annotation, labels): nothing to judge again
        obj = dict(request.object or {})
        obj["metadata"] = {**(obj.get("metadata") or {}), "namespace": request.namespace}
        try:
            iset = InferenceSet.parse(obj)
        except ValidationError as exc:
            return Verdict(errors=tuple(_from_pydantic(error) for error in exc.errors()))
        problems = _check_set(iset)
        child = dataclasses.replace(
            request,
            kind={**request.kind, "kind": WORKSPACE_KIND},
            resource={**request.resource, "resource": "workspaces"},
            operation="CREATE",  # each child is created afresh, so a template may change anything
            object=child_workspace(iset),
            old_object=None,
        )
        verdict = await workspace(child)
        problems += [FieldError(set_path(e.path), e.message) for e in verdict.errors]
        return Verdict(errors=tuple(problems), warnings=verdict.warnings)

    return validate


def _check_set(iset: InferenceSet) -> list[FieldError]:
    problems = []
    if len(iset.name) > MAX_NAME_LENGTH:
        problems.append(
            FieldError("metadata.name", f"at most {MAX_NAME_LENGTH} characters: each replica is named <name>-xxxxx")
        )
    scaling = iset.spec.autoscaling
    if scaling is not None:
        if scaling.min_replicas > scaling.max_replicas:
            problems.append(FieldError("spec.autoscaling.minReplicas", "must not exceed maxReplicas"))
        durations = {"scaleDownDelay": scaling.scale_down_delay, "scaleToZeroAfter": scaling.scale_to_zero_after}
        for field, text in durations.items():
            try:
                if text is not None:
                    parse_duration(text)
            except ValueError as exc:
                problems.append(FieldError(f"spec.autoscaling.{field}", str(exc)))
    return problems


def _from_pydantic(error: ErrorDetails) -> FieldError:
    path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in error["loc"]).replace(".[", "[")
    return FieldError(path, str(error["msg"]))
