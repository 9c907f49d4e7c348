"""The Workspace resource (kaito.sh): what the user asks for (resource, inference or tuning) and what we report.

One shape serves both versions: `v1beta1` is stored, `v1alpha1` is served for the manifests users already
have. As upstream, the spec fields sit at the top level (no `spec:` wrapper).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from kaito.api.wire import TopLevelObject, WireModel

GROUP = "kaito.sh"
STORAGE_VERSION = "v1beta1"
SERVED_VERSIONS = ("v1beta1", "v1alpha1")
KIND = "Workspace"
PLURAL = "workspaces"
FINALIZER = "workspace.finalizer.kaito.sh"
LABEL_WORKSPACE = "kaito.sh/workspace"
LABEL_WORKSPACE_NAMESPACE = "kaito.sh/workspacenamespace"

Schemaless = dict[str, Any]
"""An embedded Kubernetes type we pass through unvalidated (pod templates, volume sources)."""


class LabelSelectorRequirement(WireModel):
    key: str
    operator: str = Field(description="In, NotIn, Exists or DoesNotExist (kaito accepts only In)")
    values: list[str] | None = None


class LabelSelector(WireModel):
    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class NodeResources(WireModel):
    """The GPU nodes: which instance type and how many (an InferenceSet's template gives these alone)."""

    count: int | None = Field(default=None, ge=1, description="Number of nodes (deprecated: kaito sizes this)")
    instance_type: str | None = Field(default=None, description="Cloud SKU, e.g. Standard_NC24ads_A100_v4, or auto")
    instance_types: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Cloud SKUs in order of preference, instead of instanceType: when the cloud refuses one "
        "(quota, SKU not offered, or no capacity after retries) the next is tried",
    )


class ResourceSpec(NodeResources):
    """The GPU nodes: which instance type, how many, and the labels that pick them."""

    label_selector: LabelSelector = Field(description="Labels of the nodes the workload may run on")
    preferred_nodes: list[str] | None = Field(default=None, description="Deprecated; ignored")


class PresetOptions(WireModel):
    image: str | None = Field(
        default=None,
        description="A model image (kaito push-model) holding this preset's weights; pulled into a node-local cache "
        "instead of downloading from Hugging Face. A model not in the catalog is sized from the image's config.",
    )
    image_pull_secrets: list[str] | None = Field(
        default=None, description="docker-registry Secrets (same namespace) to pull the model image with"
    )
    model_access_secret: str | None = Field(default=None, description="Secret with key HF_TOKEN for gated models")


class PresetSpec(WireModel):
    name: str = Field(description="A preset name (e.g. phi-3-mini-4k-instruct) or a catalog Hugging Face id")
    access_mode: str | None = Field(default=None, description="Deprecated: public or private")
    preset_options: PresetOptions | None = None


class AdapterSource(WireModel):
    """Where an adapter comes from: its name and the image, volume or tuning Workspace holding it."""

    name: str = Field(description="Adapter name (DNS-1123 subdomain); clients select it as the model name")
    image: str | None = Field(default=None, description="OCI image holding the adapter under /data")
    image_pull_secrets: list[str] | None = None
    volume_source: Schemaless | None = None
    workspace: str | None = Field(
        default=None,
        description="A tuning Workspace in this namespace, instead of image: the adapter it pushed, by digest; a new "
        "successful run is served in its place without a restart",
    )


class AdapterSpec(WireModel):
    """One LoRA adapter loaded beside the base model."""

    source: AdapterSource
    strength: str | None = Field(default=None, description='Weight in [0, 1] as a string, e.g. "1.0"')


class InferenceSpec(WireModel):
    """What to serve: a preset model (with optional adapters) or a pod template of your own."""

    preset: PresetSpec | None = Field(default=None, description="The model to serve, from the preset catalog")
    template: Schemaless | None = Field(default=None, description="A pod template, instead of a preset")
    adapters: list[AdapterSpec] | None = Field(
        default=None,
        max_length=10,
        description="LoRA adapters (at most 10) served beside the preset model; clients pick one by its name as the "
        "model in a request",
    )
    config: str | None = Field(default=None, description="ConfigMap with inference_config.yaml (same namespace)")


class DataSource(WireModel):
    name: str | None = None
    urls: list[str] | None = None
    image: str | None = None
    image_pull_secrets: list[str] | None = None
    volume_source: Schemaless | None = None


class DataDestination(WireModel):
    image: str | None = None
    image_push_secret: str | None = None
    volume_source: Schemaless | None = None


class TuningSpec(WireModel):
    """A fine-tuning run: the base model, the method, the data in and where the adapter goes."""

    preset: PresetSpec | None = Field(default=None, description="The base model to tune, from the preset catalog")
    method: str | None = Field(default=None, description="lora or qlora")
    config: str | None = Field(default=None, description="ConfigMap with training_config.yaml (same namespace)")
    input: DataSource | None = None
    output: DataDestination | None = None


class Condition(WireModel):
    """One aspect of the object and where it stands, as Kubernetes conditions say it."""

    type: str = Field(description="The aspect, e.g. InferenceReady on a Workspace, Scaled on an InferenceSet")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown")
    reason: str = Field(default="", description="Why, in one CamelCase word; the README lists each one kaito writes")
    message: str = Field(default="", description="What happened and what would fix it, for people")
    last_transition_time: str | None = Field(default=None, description="When status last changed (RFC 3339)")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation of the object the condition was written for"
    )


class EngineNumbers(WireModel):
    """The plan's numbers the inference engine runs with: recorded in `status.plan`, handed to the pod as they are."""

    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    data_parallel_size: int | None = None
    dtype: str | None = None
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    kv_cache_dtype: str | None = None
    max_loras: int | None = None
    max_lora_rank: int | None = None
    kv_cache_memory: int | None = Field(
        default=None, description="Bytes the transformers engine allows for KV caches (inference_config.yaml)"
    )

    def engine_numbers(self) -> dict[str, Any]:
        """These numbers alone, by field name, to build another model that carries them."""
        return {name: getattr(self, name) for name in EngineNumbers.model_fields}


class HubModelStatus(WireModel):
    """A Hugging Face model the catalog lacks, as the plan was sized from it: the revision read, pinned."""

    repository: str = Field(description="The model's id on the hub, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    revision: str = Field(description="The commit read; the pods load this revision")
    gated: bool | None = Field(default=None, description="Whether the hub needs a token to download it")
    config: Schemaless = Field(
        default_factory=dict,
        description="The numbers read from its config.json and file list (a model image config's fields)",
    )


class PlanStatus(EngineNumbers):
    """The sizing plan chosen for this workspace, with the reason for each number."""

    model: str | None = None
    hub: HubModelStatus | None = Field(
        default=None, description="Set when the model was read from a Hugging Face hub rather than the catalog"
    )
    instance_type: str | None = None
    nodes: int | None = None
    gpus_per_node: int | None = None
    kv_cache_tokens: int | None = None
    engine_args: list[str] | None = Field(
        default=None,
        description="The vLLM flags rendered from this plan, for reading (the engine config carries the numbers)",
    )
    inputs_hash: str | None = Field(default=None, description="Hash of what the plan was computed from")
    replanned_from_max_model_len: int | None = Field(
        default=None,
        description="The max-model-len the engine refused at start; this plan was re-planned once from what it said "
        "would fit (kept while the plan's inputs hold)",
    )
    explanation: list[str] | None = None


class TuningStatus(WireModel):
    """What a finished tuning run produced, as `kaito tune` reported it."""

    image: str | None = Field(default=None, description="The output image the adapter was pushed to")
    digest: str | None = Field(default=None, description="The pushed manifest's digest (pull by image@digest)")
    size: int | None = Field(default=None, description="Bytes pushed")
    steps: int | None = Field(default=None, description="Optimizer steps taken")
    loss: float | None = Field(default=None, description="Training loss over the last logging window")


# The steps from `kubectl apply` to the first token, in order (`status.phases`): the plan made, the NodeClaims
# launched, the GPU nodes Ready, the model image pulled (only with one), the engine's container running, and the
# workspace first ready to serve.
PHASES = ("planned", "nodesProvisioned", "nodesReady", "modelPulled", "engineStarted", "firstReady")


class PhaseStatus(WireModel):
    """One step on the way to the first token, timed by the objects that took it (not by when kaito noticed)."""

    name: str = Field(description="planned, nodesProvisioned, nodesReady, modelPulled, engineStarted or firstReady")
    started_at: str | None = None
    ended_at: str | None = Field(default=None, description="Unset while the phase is under way")


class InstanceAttempt(WireModel):
    """One instance type the cloud refused for this workspace, in the cloud's own words."""

    instance_type: str
    reason: str = Field(description="QuotaExceeded, SkuNotAvailable or InsufficientCapacity")
    message: str = Field(default="", description="The cloud's message")
    time: str | None = None
    node_claim_uid: str | None = Field(
        default=None, description="The NodeClaim refused (each claim's refusal is told once)"
    )


class EngineStatus(WireModel):
    """The plan's prediction beside what the engine reported at start: here, its refusal and the numbers in it."""

    predicted_kv_cache_tokens: int | None = None
    predicted_max_model_len: int | None = None
    observed_kv_cache_tokens: int | None = Field(default=None, description="What the engine's KV cache held")
    observed_max_model_len: int | None = Field(default=None, description="The context length the engine was asked for")
    fits_max_model_len: int | None = Field(default=None, description="The longest context the engine said would fit")
    refusal: str | None = Field(default=None, description="EngineKVCacheTooSmall or EngineOutOfMemory")
    message: str | None = Field(default=None, description="The engine's own words")


# An adapter's state in the inference pods, worst first: the Workspace shows the worst any pod reports.
ADAPTER_STATES = ("Failed", "Pulling", "Loaded")


class AdapterStatus(WireModel):
    """One adapter as the inference pods serve it (the worst state among them, with that pod's words)."""

    name: str
    image: str | None = Field(default=None, description="The image pulled (a tuning Workspace's, when named)")
    digest: str | None = Field(default=None, description="The manifest digest resolved and pulled")
    state: str = Field(description="Pulling, Loaded or Failed")
    message: str | None = Field(default=None, description="The registry's or loader's words, or what is awaited")


class WorkspaceStatus(WireModel):
    conditions: list[Condition] | None = None
    worker_nodes: list[str] | None = None
    target_node_count: int | None = None
    state: str | None = Field(default=None, description="Pending, Ready, NotReady, Running, Succeeded or Failed")
    plan: PlanStatus | None = None
    tuning: TuningStatus | None = None
    performance: Schemaless | None = None
    phases: list[PhaseStatus] | None = Field(
        default=None, description="When each step to the first readiness started and ended; kept once ended"
    )
    instance_attempts: list[InstanceAttempt] | None = Field(
        default=None, description="Instance types refused so far, oldest first (with instanceTypes or auto)"
    )
    engine: EngineStatus | None = None
    adapters: list[AdapterStatus] | None = Field(
        default=None, description="Each adapter as the inference pods serve it; a Failed one alone fails"
    )
    adapters_loaded: str | None = Field(default=None, description="Adapters loaded out of wanted, e.g. 2/3")

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions or [] if c.type == kind), None)


class Workspace(TopLevelObject):
    api_version: str = f"{GROUP}/{STORAGE_VERSION}"
    kind: str = KIND
    resource: ResourceSpec
    inference: InferenceSpec | None = None
    tuning: TuningSpec | None = None
    status: WorkspaceStatus | None = None

    @property
    def preset_name(self) -> str | None:
        spec = self.inference or self.tuning
        return spec.preset.name if spec is not None and spec.preset is not None else None
