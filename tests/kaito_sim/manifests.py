"""Manifests the conformance tests apply: the example ModelCard CRD and small built-in objects."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sim"
CRD = (EXAMPLES / "modelcard-crd.yaml").read_text()
CARD = (EXAMPLES / "modelcard.yaml").read_text()
GROUP, VERSION, PLURAL = "demo.kaito.sh", "v1", "modelcards"


def card(name: str, *, model: str = "phi-4", gpus: int | None = None, labels: str = "") -> str:
    lines = ["apiVersion: demo.kaito.sh/v1", "kind: ModelCard", "metadata:", f"  name: {name}"]
    if labels:
        lines += ["  labels:"] + [f"    {pair.split('=')[0]}: {pair.split('=')[1]!r}" for pair in labels.split(",")]
    lines += ["spec:", f"  model: {model}"]
    if gpus is not None:
        lines.append(f"  gpus: {gpus}")
    return "\n".join(lines) + "\n"


def deployment(name: str, *, image: str = "nginx:1.27", replicas: int = 1) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: web
          image: {image}
          ports:
            - containerPort: 80
          env:
            - name: A
              value: "1"
"""
