"""`kaito status` and `kaito chat`: a workspace explained for a person, and a question asked through the API server.

Both talk to the cluster in the current kubeconfig, as kubectl does. `chat` goes through the API server's
Service proxy (`/api/v1/namespaces/<ns>/services/<ws>:80/proxy/...`), so it needs no port-forward and works
wherever `kubectl get --raw` works.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from kaito.api.nodeclaim import NODECLAIM
from kaito.controllers.kinds import WORKSPACE, workspace_labels
from kaito.controllers.timeline import apply_to_ready, parse_time
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.kinds import NODE, POD

Obj = dict[str, Any]
PHASE_LABELS = {
    "planned": "planned",
    "nodesProvisioned": "nodes provisioned",
    "nodesReady": "nodes ready",
    "modelPulled": "model pulled",
    "engineStarted": "engine started",
    "firstReady": "ready",
}
CONDITION_ORDER = ("NodeClaimReady", "NodesReady", "ResourceReady", "InferenceReady", "JobStarted")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", help="the Workspace's name")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, else ~/.kube/config")


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("question", help="what to ask")
    parser.add_argument("--model", help="the base model or one of its adapters (default: the first /v1/models entry)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)


def service_proxy_path(namespace: str, service: str, path: str, port: int = 80) -> str:
    return f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"


async def run_status(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    async with await Client.from_config(kubeconfig=args.kubeconfig, user_agent="kaito-status") as client:
        try:
            ws = await client.get(WORKSPACE, args.workspace, namespace=args.namespace)
        except errors.NotFound:
            print(f"kaito status: workspace {args.namespace}/{args.workspace} not found", file=sys.stderr)
            return 1
        labels = workspace_labels(args.workspace, args.namespace)
        claims = (await client.list(NODECLAIM, label_selector=_selector(labels))).items
        pods = (await client.list(POD, namespace=args.namespace, label_selector=_selector(labels))).items
        nodes = [await errors.ignore_not_found(client.get(NODE, name)) for name in _node_names(ws, claims)]
    out.write(describe(ws, claims, [n for n in nodes if n is not None], pods))
    return 0


def describe(ws: Obj, claims: list[Obj], nodes: list[Obj], pods: list[Obj]) -> str:
    """The whole story of one workspace, in the order a person asks: is it working, why, where, how to reach it."""
    meta, status = ws["metadata"], ws.get("status") or {}
    lines = [f"workspace {meta['namespace']}/{meta['name']}: {status.get('state') or 'Pending'}"]
    lines += _plan_lines(status.get("plan") or {})
    lines += timeline_lines(status.get("phases") or [])
    lines += engine_lines(status.get("engine") or {})
    if attempts := status.get("instanceAttempts"):
        lines.append("instance types refused:")
        for attempt in attempts:
            lines.append(
                f"  {attempt.get('time') or '-':20} {attempt['instanceType']:28} {attempt['reason']}: "
                f"{attempt.get('message', '')}"
            )
    lines.append("conditions:")
    for cond in sorted(status.get("conditions") or [], key=_condition_rank):
        lines.append(f"  {cond['type']:18} {cond['status']:6} {cond.get('reason', '')}: {cond.get('message', '')}")
    if claims:
        lines.append("nodeclaims:")
        for claim in claims:
            ready = _condition(claim, "Ready")
            node = (claim.get("status") or {}).get("nodeName") or "-"
            lines.append(f"  {claim['metadata']['name']:28} ready={ready.get('status', 'Unknown'):7} node={node}")
    if nodes:
        lines.append("nodes:")
        for node in nodes:
            capacity = (node.get("status") or {}).get("capacity") or {}
            ready = _condition(node, "Ready").get("status", "Unknown")
            lines.append(f"  {node['metadata']['name']:40} ready={ready:7} gpus={capacity.get('nvidia.com/gpu', '0')}")
    if pods:
        lines.append("pods:")
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase", "Pending")
            lines.append(f"  {pod['metadata']['name']:40} {phase:10} node={pod['spec'].get('nodeName') or '-'}")
    lines += _endpoint_lines(ws)
    return "\n".join(lines) + "\n"


def _plan_lines(plan: Obj) -> list[str]:
    if not plan:
        return []
    summary = (
        f"plan: {plan.get('nodes')} x {plan.get('instanceType')} ({plan.get('gpusPerNode')} GPU each), "
        f"tp={plan.get('tensorParallelSize')} pp={plan.get('pipelineParallelSize')} dtype={plan.get('dtype')} "
        f"max-model-len={plan.get('maxModelLen')} max-num-seqs={plan.get('maxNumSeqs')}"
    )
    return [summary, *(f"  why: {line}" for line in plan.get("explanation") or [])]


def engine_lines(engine: Obj) -> list[str]:
    """`status.engine`: what the plan predicted beside what the engine observed at start, and its refusal."""
    if not engine:
        return []

    def pair(predicted: str, observed: str) -> str:
        return f"predicted {engine.get(predicted, '-')}, observed {engine.get(observed, '-')}"

    lines = [
        f"engine: {engine.get('refusal') or 'started'}: "
        f"kv-cache-tokens {pair('predictedKvCacheTokens', 'observedKvCacheTokens')}; "
        f"max-model-len {pair('predictedMaxModelLen', 'observedMaxModelLen')}"
        + (f"; fits {fits}" if (fits := engine.get("fitsMaxModelLen")) is not None else "")
    ]
    if message := engine.get("message"):
        lines.append(f"  said: {message}")
    return lines


def timeline_lines(phases: list[Obj]) -> list[str]:
    """`status.phases` as one line, each phase with how long it took, then apply->Ready (or the phase under way)."""
    if not phases:
        return []
    steps: list[str] = []
    for phase in phases:
        label = PHASE_LABELS.get(str(phase.get("name")), str(phase.get("name")))
        took = _seconds_between(phase.get("startedAt"), phase.get("endedAt"))
        steps.append(f"{label} {'+' if steps else ''}{format_duration(took)}" if took is not None else f"{label} ...")
    total = apply_to_ready(phases)
    ending = f"apply→Ready {format_duration(total)}" if total is not None else "not ready yet"
    return [f"timeline: {' → '.join(steps)} ({ending})"]


def format_duration(seconds: float) -> str:
    """`0s`, `42s`, `1m02s`, `1h05m00s`."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _seconds_between(start: object, end: object) -> float | None:
    began, ended = parse_time(start), parse_time(end)
    return None if began is None or ended is None else (ended - began).total_seconds()


def _endpoint_lines(ws: Obj) -> list[str]:
    meta, status = ws["metadata"], ws.get("status") or {}
    if ws.get("tuning") is not None:
        tuning = status.get("tuning") or {}
        if tuning.get("digest"):
            pushed = f"{tuning.get('image')}@{tuning['digest']}"
            return [f"adapter: {pushed} ({tuning.get('steps')} steps, loss {tuning.get('loss')})"]
        return []
    name, namespace = meta["name"], meta["namespace"]
    return [
        f"endpoint: http://{name}.{namespace}.svc.cluster.local/v1 (OpenAI-compatible), POST /chat (legacy)",
        f"  from here: kubectl get --raw {service_proxy_path(namespace, name, 'v1/models')}",
        f'             kaito chat {name} -n {namespace} "your question"',
    ]


async def run_chat(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    async with await Client.from_config(kubeconfig=args.kubeconfig, user_agent="kaito-chat") as client:
        try:
            model = args.model or await _first_model(client, args.namespace, args.workspace)
            body = {
                "model": model,
                "messages": [{"role": "user", "content": args.question}],
                "max_tokens": args.max_tokens,
                "temperature": args.temperature,
            }
            path = service_proxy_path(args.namespace, args.workspace, "v1/chat/completions")
            reply = await client.raw("POST", path, body=body)
        except errors.ApiError as exc:
            print(f"kaito chat: {args.namespace}/{args.workspace}: {exc}", file=sys.stderr)
            return 1
    try:
        answer = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        print(f"kaito chat: unexpected answer: {json.dumps(reply)[:500]}", file=sys.stderr)
        return 1
    out.write(f"{model}: {answer}\n")
    return 0


async def _first_model(client: Client, namespace: str, workspace: str) -> str:
    listed = await client.raw("GET", service_proxy_path(namespace, workspace, "v1/models"))
    models = [m.get("id") for m in (listed or {}).get("data") or [] if isinstance(m, dict)]
    if not models:
        raise errors.ApiError(503, reason="ServiceUnavailable", message="the server lists no models yet")
    return str(models[0])


def _node_names(ws: Obj, claims: list[Obj]) -> list[str]:
    names = set((ws.get("status") or {}).get("workerNodes") or [])
    names |= {str((c.get("status") or {}).get("nodeName")) for c in claims if (c.get("status") or {}).get("nodeName")}
    return sorted(names)


def _condition(obj: Obj, kind: str) -> Obj:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})


def _condition_rank(cond: Obj) -> int:
    kind = cond.get("type", "")
    return CONDITION_ORDER.index(kind) if kind in CONDITION_ORDER else len(CONDITION_ORDER)


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
