"""Field-number tables for the Kubernetes protobuf messages `kaito sim` decodes, since no protobuf library is available.

Numbers follow the `generated.proto` files of k8s.io/api and k8s.io/apimachinery (written from the public API,
checked against what kubectl 1.32 sends). `protobuf.decode_message` walks these tables; a field number missing
from a table is skipped, like any protobuf reader skips unknown fields.

Type names used in `Field.type`:
    string, int, bool, bytes          proto scalars (int covers int32/int64; bytes become base64 in JSON)
    Time, MicroTime, IntOrString,     apimachinery types with a custom JSON form
    Quantity, FieldsV1, StringList
    any other name                    a message in `MESSAGES`

`keep` marks fields whose zero value is still emitted in JSON (Go pointers and fields without `omitempty`);
other scalars equal to their zero value are left out, as `omitempty` does. Message fields are emitted whenever
they are on the wire, because Go's JSON encoder writes non-pointer structs even when empty (`"status": {}`).
`inline` marks embedded Go structs whose fields JSON flattens into the parent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One field of a message: JSON name, value type, and how it is repeated or emitted."""

    name: str
    type: str = "string"
    repeated: bool = False
    map_value: str | None = None  # set for map<string, map_value>, sent as repeated {1: key, 2: value}
    keep: bool = False
    inline: bool = False


Table = dict[int, Field]


def s(name: str, keep: bool = False) -> Field:
    return Field(name, "string", keep=keep)


def n(name: str, keep: bool = False) -> Field:
    return Field(name, "int", keep=keep)


def b(name: str, keep: bool = False) -> Field:
    return Field(name, "bool", keep=keep)


def m(name: str, type_: str, keep: bool = False) -> Field:
    return Field(name, type_, keep=keep)


def strs(name: str) -> Field:
    return Field(name, "string", repeated=True)


def ms(name: str, type_: str) -> Field:
    return Field(name, type_, repeated=True)


def smap(name: str, value: str = "string") -> Field:
    return Field(name, "map", map_value=value)


def inline(type_: str) -> Field:
    return Field("", type_, inline=True)


def _object(spec: str | None = None, status: str | None = None) -> Table:
    """The common {1: metadata, 2: spec, 3: status} shape of top-level kinds."""
    table: Table = {1: m("metadata", "ObjectMeta")}
    if spec:
        table[2] = m("spec", spec)
    if status:
        table[3] = m("status", status)
    return table


META: dict[str, Table] = {
    "ObjectMeta": {
        1: s("name"),
        2: s("generateName"),
        3: s("namespace"),
        4: s("selfLink"),
        5: s("uid"),
        6: s("resourceVersion"),
        7: n("generation"),
        8: m("creationTimestamp", "Time"),
        9: m("deletionTimestamp", "Time"),
        10: n("deletionGracePeriodSeconds", keep=True),
        11: smap("labels"),
        12: smap("annotations"),
        13: ms("ownerReferences", "OwnerReference"),
        14: strs("finalizers"),
        17: ms("managedFields", "ManagedFieldsEntry"),
    },
    "OwnerReference": {
        1: s("kind", keep=True),
        3: s("name", keep=True),
        4: s("uid", keep=True),
        5: s("apiVersion", keep=True),
        6: b("controller", keep=True),
        7: b("blockOwnerDeletion", keep=True),
    },
    "ManagedFieldsEntry": {
        1: s("manager"),
        2: s("operation"),
        3: s("apiVersion"),
        4: m("time", "Time"),
        6: s("fieldsType"),
        7: m("fieldsV1", "FieldsV1"),
        8: s("subresource"),
    },
    "LabelSelector": {1: smap("matchLabels"), 2: ms("matchExpressions", "LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: s("key", keep=True), 2: s("operator", keep=True), 3: strs("values")},
    "Condition": {
        1: s("type", keep=True),
        2: s("status", keep=True),
        3: n("observedGeneration"),
        4: m("lastTransitionTime", "Time"),
        5: s("reason", keep=True),
        6: s("message", keep=True),
    },
}

CORE_OBJECTS: dict[str, Table] = {
    "Namespace": _object("NamespaceSpec", "NamespaceStatus"),
    "NamespaceSpec": {1: strs("finalizers")},
    "NamespaceStatus": {1: s("phase"), 2: ms("conditions", "NamespaceCondition")},
    "NamespaceCondition": {
        1: s("type", keep=True),
        2: s("status", keep=True),
        4: m("lastTransitionTime", "Time"),
        5: s("reason"),
        6: s("message"),
    },
    "ConfigMap": {
        1: m("metadata", "ObjectMeta"),
        2: smap("data"),
        3: smap("binaryData", "bytes"),
        4: b("immutable", keep=True),
    },
    "Secret": {
        1: m("metadata", "ObjectMeta"),
        2: smap("data", "bytes"),
        3: s("type"),
        4: smap("stringData"),
        5: b("immutable", keep=True),
    },
    "ServiceAccount": {
        1: m("metadata", "ObjectMeta"),
        2: ms("secrets", "ObjectReference"),
        3: ms("imagePullSecrets", "LocalObjectReference"),
        4: b("automountServiceAccountToken", keep=True),
    },
    "ObjectReference": {
        1: s("kind"),
        2: s("namespace"),
        3: s("name"),
        4: s("uid"),
        5: s("apiVersion"),
        6: s("resourceVersion"),
        7: s("fieldPath"),
    },
    "LocalObjectReference": {1: s("name")},
    "TypedLocalObjectReference": {1: s("apiGroup", keep=True), 2: s("kind", keep=True), 3: s("name", keep=True)},
    "Service": _object("ServiceSpec", "ServiceStatus"),
    "ServiceSpec": {
        1: ms("ports", "ServicePort"),
        2: smap("selector"),
        3: s("clusterIP"),
        4: s("type"),
        5: strs("externalIPs"),
        7: s("sessionAffinity"),
        8: s("loadBalancerIP"),
        9: strs("loadBalancerSourceRanges"),
        10: s("externalName"),
        11: s("externalTrafficPolicy"),
        12: n("healthCheckNodePort"),
        13: b("publishNotReadyAddresses"),
        14: m("sessionAffinityConfig", "SessionAffinityConfig"),
        17: s("ipFamilyPolicy", keep=True),
        18: strs("clusterIPs"),
        19: strs("ipFamilies"),
        20: b("allocateLoadBalancerNodePorts", keep=True),
        21: s("loadBalancerClass", keep=True),
        22: s("internalTrafficPolicy", keep=True),
        23: s("trafficDistribution", keep=True),
    },
    "ServicePort": {
        1: s("name"),
        2: s("protocol"),
        3: n("port", keep=True),
        4: m("targetPort", "IntOrString"),
        5: n("nodePort"),
        6: s("appProtocol", keep=True),
    },
    "SessionAffinityConfig": {1: m("clientIP", "ClientIPConfig")},
    "ClientIPConfig": {1: n("timeoutSeconds", keep=True)},
    "ServiceStatus": {1: m("loadBalancer", "LoadBalancerStatus"), 2: ms("conditions", "Condition")},
    "LoadBalancerStatus": {1: ms("ingress", "LoadBalancerIngress")},
    "LoadBalancerIngress": {1: s("ip"), 2: s("hostname"), 3: s("ipMode", keep=True)},
    "ResourceQuota": _object("ResourceQuotaSpec", "ResourceQuotaStatus"),
    "ResourceQuotaSpec": {1: smap("hard", "Quantity"), 2: strs("scopes"), 3: m("scopeSelector", "ScopeSelector")},
    "ResourceQuotaStatus": {1: smap("hard", "Quantity"), 2: smap("used", "Quantity")},
    "ScopeSelector": {1: ms("matchExpressions", "ScopedResourceSelectorRequirement")},
    "ScopedResourceSelectorRequirement": {1: s("scopeName", keep=True), 2: s("operator", keep=True), 3: strs("values")},
    "Pod": _object("PodSpec", "PodStatus"),
    "PodTemplateSpec": {1: m("metadata", "ObjectMeta"), 2: m("spec", "PodSpec")},
    "PodStatus": {
        1: s("phase"),
        2: ms("conditions", "PodCondition"),
        3: s("message"),
        4: s("reason"),
        5: s("hostIP"),
        6: s("podIP"),
        7: m("startTime", "Time"),
        9: s("qosClass"),
        11: s("nominatedNodeName"),
    },
    "PodCondition": {
        1: s("type", keep=True),
        2: s("status", keep=True),
        3: m("lastProbeTime", "Time"),
        4: m("lastTransitionTime", "Time"),
        5: s("reason"),
        6: s("message"),
        7: n("observedGeneration"),
    },
}

POD_SPEC: dict[str, Table] = {
    "PodSpec": {
        1: ms("volumes", "Volume"),
        2: ms("containers", "Container"),
        3: s("restartPolicy"),
        4: n("terminationGracePeriodSeconds", keep=True),
        5: n("activeDeadlineSeconds", keep=True),
        6: s("dnsPolicy"),
        7: smap("nodeSelector"),
        8: s("serviceAccountName"),
        9: s("serviceAccount"),
        10: s("nodeName"),
        11: b("hostNetwork"),
        12: b("hostPID"),
        13: b("hostIPC"),
        14: m("securityContext", "PodSecurityContext"),
        15: ms("imagePullSecrets", "LocalObjectReference"),
        16: s("hostname"),
        17: s("subdomain"),
        18: m("affinity", "Affinity"),
        19: s("schedulerName"),
        20: ms("initContainers", "Container"),
        21: b("automountServiceAccountToken", keep=True),
        22: ms("tolerations", "Toleration"),
        23: ms("hostAliases", "HostAlias"),
        24: s("priorityClassName"),
        25: n("priority", keep=True),
        26: m("dnsConfig", "PodDNSConfig"),
        27: b("shareProcessNamespace", keep=True),
        28: ms("readinessGates", "PodReadinessGate"),
        29: s("runtimeClassName", keep=True),
        30: b("enableServiceLinks", keep=True),
        31: s("preemptionPolicy", keep=True),
        32: smap("overhead", "Quantity"),
        33: ms("topologySpreadConstraints", "TopologySpreadConstraint"),
        35: b("setHostnameAsFQDN", keep=True),
        36: m("os", "PodOS"),
        37: b("hostUsers", keep=True),
        38: ms("schedulingGates", "PodSchedulingGate"),
        40: m("resources", "ResourceRequirements"),
    },
    "PodOS": {1: s("name", keep=True)},
    "PodSchedulingGate": {1: s("name", keep=True)},
    "PodReadinessGate": {1: s("conditionType", keep=True)},
    "HostAlias": {1: s("ip", keep=True), 2: strs("hostnames")},
    "PodDNSConfig": {1: strs("nameservers"), 2: strs("searches"), 3: ms("options", "PodDNSConfigOption")},
    "PodDNSConfigOption": {1: s("name"), 2: s("value", keep=True)},
    "Toleration": {1: s("key"), 2: s("operator"), 3: s("value"), 4: s("effect"), 5: n("tolerationSeconds", keep=True)},
    "PodSecurityContext": {
        1: m("seLinuxOptions", "SELinuxOptions"),
        2: n("runAsUser", keep=True),
        3: b("runAsNonRoot", keep=True),
        4: Field("supplementalGroups", "int", repeated=True),
        5: n("fsGroup", keep=True),
        6: n("runAsGroup", keep=True),
        7: ms("sysctls", "Sysctl"),
        8: m("windowsOptions", "WindowsSecurityContextOptions"),
        9: s("fsGroupChangePolicy", keep=True),
        10: m("seccompProfile", "SeccompProfile"),
        11: m("appArmorProfile", "AppArmorProfile"),
        12: s("supplementalGroupsPolicy", keep=True),
        13: s("seLinuxChangePolicy", keep=True),
    },
    "SecurityContext": {
        1: m("capabilities", "Capabilities"),
        2: b("privileged", keep=True),
        3: m("seLinuxOptions", "SELinuxOptions"),
        4: n("runAsUser", keep=True),
        5: b("runAsNonRoot", keep=True),
        6: b("readOnlyRootFilesystem", keep=True),
        7: b("allowPrivilegeEscalation", keep=True),
        8: n("runAsGroup", keep=True),
        9: s("procMount", keep=True),
        10: m("windowsOptions", "WindowsSecurityContextOptions"),
        11: m("seccompProfile", "SeccompProfile"),
        12: m("appArmorProfile", "AppArmorProfile"),
    },
    "Capabilities": {1: strs("add"), 2: strs("drop")},
    "SELinuxOptions": {1: s("user"), 2: s("role"), 3: s("type"), 4: s("level")},
    "WindowsSecurityContextOptions": {
        1: s("gmsaCredentialSpecName", keep=True),
        2: s("gmsaCredentialSpec", keep=True),
        3: s("runAsUserName", keep=True),
        4: b("hostProcess", keep=True),
    },
    "SeccompProfile": {1: s("type", keep=True), 2: s("localhostProfile", keep=True)},
    "AppArmorProfile": {1: s("type", keep=True), 2: s("localhostProfile", keep=True)},
    "Sysctl": {1: s("name", keep=True), 2: s("value", keep=True)},
}

CONTAINER: dict[str, Table] = {
    "Container": {
        1: s("name", keep=True),
        2: s("image"),
        3: strs("command"),
        4: strs("args"),
        5: s("workingDir"),
        6: ms("ports", "ContainerPort"),
        7: ms("env", "EnvVar"),
        8: m("resources", "ResourceRequirements"),
        9: ms("volumeMounts", "VolumeMount"),
        10: m("livenessProbe", "Probe"),
        11: m("readinessProbe", "Probe"),
        12: m("lifecycle", "Lifecycle"),
        13: s("terminationMessagePath"),
        14: s("imagePullPolicy"),
        15: m("securityContext", "SecurityContext"),
        16: b("stdin"),
        17: b("stdinOnce"),
        18: b("tty"),
        19: ms("envFrom", "EnvFromSource"),
        20: s("terminationMessagePolicy"),
        21: ms("volumeDevices", "VolumeDevice"),
        22: m("startupProbe", "Probe"),
        23: ms("resizePolicy", "ContainerResizePolicy"),
        24: s("restartPolicy", keep=True),
    },
    "ContainerPort": {
        1: s("name"),
        2: n("hostPort"),
        3: n("containerPort", keep=True),
        4: s("protocol"),
        5: s("hostIP"),
    },
    "EnvVar": {1: s("name", keep=True), 2: s("value"), 3: m("valueFrom", "EnvVarSource")},
    "EnvVarSource": {
        1: m("fieldRef", "ObjectFieldSelector"),
        2: m("resourceFieldRef", "ResourceFieldSelector"),
        3: m("configMapKeyRef", "ConfigMapKeySelector"),
        4: m("secretKeyRef", "SecretKeySelector"),
    },
    "ObjectFieldSelector": {1: s("apiVersion"), 2: s("fieldPath", keep=True)},
    "ResourceFieldSelector": {1: s("containerName"), 2: s("resource", keep=True), 3: m("divisor", "Quantity")},
    "ConfigMapKeySelector": {1: inline("LocalObjectReference"), 2: s("key", keep=True), 3: b("optional", keep=True)},
    "SecretKeySelector": {1: inline("LocalObjectReference"), 2: s("key", keep=True), 3: b("optional", keep=True)},
    "EnvFromSource": {
        1: s("prefix"),
        2: m("configMapRef", "ConfigMapEnvSource"),
        3: m("secretRef", "SecretEnvSource"),
    },
    "ConfigMapEnvSource": {1: inline("LocalObjectReference"), 2: b("optional", keep=True)},
    "SecretEnvSource": {1: inline("LocalObjectReference"), 2: b("optional", keep=True)},
    "ResourceRequirements": {
        1: smap("limits", "Quantity"),
        2: smap("requests", "Quantity"),
        3: ms("claims", "ResourceClaim"),
    },
    "ResourceClaim": {1: s("name", keep=True), 2: s("request")},
    "ContainerResizePolicy": {1: s("resourceName", keep=True), 2: s("restartPolicy", keep=True)},
    "VolumeMount": {
        1: s("name", keep=True),
        2: b("readOnly"),
        3: s("mountPath", keep=True),
        4: s("subPath"),
        5: s("mountPropagation", keep=True),
        6: s("subPathExpr"),
        7: s("recursiveReadOnly", keep=True),
    },
    "VolumeDevice": {1: s("name", keep=True), 2: s("devicePath", keep=True)},
    "Probe": {
        1: inline("ProbeHandler"),
        2: n("initialDelaySeconds"),
        3: n("timeoutSeconds"),
        4: n("periodSeconds"),
        5: n("successThreshold"),
        6: n("failureThreshold"),
        7: n("terminationGracePeriodSeconds", keep=True),
    },
    "ProbeHandler": {
        1: m("exec", "ExecAction"),
        2: m("httpGet", "HTTPGetAction"),
        3: m("tcpSocket", "TCPSocketAction"),
        4: m("grpc", "GRPCAction"),
    },
    "ExecAction": {1: strs("command")},
    "HTTPGetAction": {
        1: s("path"),
        2: m("port", "IntOrString"),
        3: s("host"),
        4: s("scheme"),
        5: ms("httpHeaders", "HTTPHeader"),
    },
    "HTTPHeader": {1: s("name", keep=True), 2: s("value", keep=True)},
    "TCPSocketAction": {1: m("port", "IntOrString"), 2: s("host")},
    "GRPCAction": {1: n("port", keep=True), 2: s("service", keep=True)},
    "Lifecycle": {
        1: m("postStart", "LifecycleHandler"),
        2: m("preStop", "LifecycleHandler"),
        3: s("stopSignal", keep=True),
    },
    "LifecycleHandler": {
        1: m("exec", "ExecAction"),
        2: m("httpGet", "HTTPGetAction"),
        3: m("tcpSocket", "TCPSocketAction"),
        4: m("sleep", "SleepAction"),
    },
    "SleepAction": {1: n("seconds", keep=True)},
}

VOLUMES: dict[str, Table] = {
    "Volume": {1: s("name", keep=True), 2: inline("VolumeSource")},
    "VolumeSource": {
        1: m("hostPath", "HostPathVolumeSource"),
        2: m("emptyDir", "EmptyDirVolumeSource"),
        6: m("secret", "SecretVolumeSource"),
        7: m("nfs", "NFSVolumeSource"),
        10: m("persistentVolumeClaim", "PersistentVolumeClaimVolumeSource"),
        16: m("downwardAPI", "DownwardAPIVolumeSource"),
        19: m("configMap", "ConfigMapVolumeSource"),
        26: m("projected", "ProjectedVolumeSource"),
        28: m("csi", "CSIVolumeSource"),
        29: m("ephemeral", "EphemeralVolumeSource"),
        30: m("image", "ImageVolumeSource"),
    },
    "HostPathVolumeSource": {1: s("path", keep=True), 2: s("type", keep=True)},
    "EmptyDirVolumeSource": {1: s("medium"), 2: m("sizeLimit", "Quantity")},
    "SecretVolumeSource": {
        1: s("secretName"),
        2: ms("items", "KeyToPath"),
        3: n("defaultMode", keep=True),
        4: b("optional", keep=True),
    },
    "ConfigMapVolumeSource": {
        1: inline("LocalObjectReference"),
        2: ms("items", "KeyToPath"),
        3: n("defaultMode", keep=True),
        4: b("optional", keep=True),
    },
    "KeyToPath": {1: s("key", keep=True), 2: s("path", keep=True), 3: n("mode", keep=True)},
    "NFSVolumeSource": {1: s("server", keep=True), 2: s("path", keep=True), 3: b("readOnly")},
    "PersistentVolumeClaimVolumeSource": {1: s("claimName", keep=True), 2: b("readOnly")},
    "DownwardAPIVolumeSource": {1: ms("items", "DownwardAPIVolumeFile"), 2: n("defaultMode", keep=True)},
    "DownwardAPIVolumeFile": {
        1: s("path", keep=True),
        2: m("fieldRef", "ObjectFieldSelector"),
        3: m("resourceFieldRef", "ResourceFieldSelector"),
        4: n("mode", keep=True),
    },
    "DownwardAPIProjection": {1: ms("items", "DownwardAPIVolumeFile")},
    "ProjectedVolumeSource": {1: ms("sources", "VolumeProjection"), 2: n("defaultMode", keep=True)},
    "VolumeProjection": {
        1: m("secret", "SecretProjection"),
        2: m("downwardAPI", "DownwardAPIProjection"),
        3: m("configMap", "ConfigMapProjection"),
        4: m("serviceAccountToken", "ServiceAccountTokenProjection"),
    },
    "SecretProjection": {1: inline("LocalObjectReference"), 2: ms("items", "KeyToPath"), 4: b("optional", keep=True)},
    "ConfigMapProjection": {
        1: inline("LocalObjectReference"),
        2: ms("items", "KeyToPath"),
        4: b("optional", keep=True),
    },
    "ServiceAccountTokenProjection": {
        1: s("audience"),
        2: n("expirationSeconds", keep=True),
        3: s("path", keep=True),
    },
    "CSIVolumeSource": {
        1: s("driver", keep=True),
        2: b("readOnly", keep=True),
        3: s("fsType", keep=True),
        4: smap("volumeAttributes"),
        5: m("nodePublishSecretRef", "LocalObjectReference"),
    },
    "EphemeralVolumeSource": {1: m("volumeClaimTemplate", "PersistentVolumeClaimTemplate")},
    "PersistentVolumeClaimTemplate": {1: m("metadata", "ObjectMeta"), 2: m("spec", "PersistentVolumeClaimSpec")},
    "PersistentVolumeClaimSpec": {
        1: strs("accessModes"),
        2: m("resources", "VolumeResourceRequirements"),
        3: s("volumeName"),
        4: m("selector", "LabelSelector"),
        5: s("storageClassName", keep=True),
        6: s("volumeMode", keep=True),
    },
    "VolumeResourceRequirements": {1: smap("limits", "Quantity"), 2: smap("requests", "Quantity")},
    "ImageVolumeSource": {1: s("reference"), 2: s("pullPolicy")},
}

AFFINITY: dict[str, Table] = {
    "Affinity": {
        1: m("nodeAffinity", "NodeAffinity"),
        2: m("podAffinity", "PodAffinity"),
        3: m("podAntiAffinity", "PodAffinity"),
    },
    "NodeAffinity": {
        1: m("requiredDuringSchedulingIgnoredDuringExecution", "NodeSelector"),
        2: ms("preferredDuringSchedulingIgnoredDuringExecution", "PreferredSchedulingTerm"),
    },
    "NodeSelector": {1: ms("nodeSelectorTerms", "NodeSelectorTerm")},
    "NodeSelectorTerm": {
        1: ms("matchExpressions", "NodeSelectorRequirement"),
        2: ms("matchFields", "NodeSelectorRequirement"),
    },
    "NodeSelectorRequirement": {1: s("key", keep=True), 2: s("operator", keep=True), 3: strs("values")},
    "PreferredSchedulingTerm": {1: n("weight", keep=True), 2: m("preference", "NodeSelectorTerm")},
    "PodAffinity": {
        1: ms("requiredDuringSchedulingIgnoredDuringExecution", "PodAffinityTerm"),
        2: ms("preferredDuringSchedulingIgnoredDuringExecution", "WeightedPodAffinityTerm"),
    },
    "PodAffinityTerm": {
        1: m("labelSelector", "LabelSelector"),
        2: strs("namespaces"),
        3: s("topologyKey", keep=True),
        4: m("namespaceSelector", "LabelSelector"),
        5: strs("matchLabelKeys"),
        6: strs("mismatchLabelKeys"),
    },
    "WeightedPodAffinityTerm": {1: n("weight", keep=True), 2: m("podAffinityTerm", "PodAffinityTerm")},
    "TopologySpreadConstraint": {
        1: n("maxSkew", keep=True),
        2: s("topologyKey", keep=True),
        3: s("whenUnsatisfiable", keep=True),
        4: m("labelSelector", "LabelSelector"),
        5: n("minDomains", keep=True),
        6: s("nodeAffinityPolicy", keep=True),
        7: s("nodeTaintsPolicy", keep=True),
        8: strs("matchLabelKeys"),
    },
}

WORKLOADS: dict[str, Table] = {
    "Deployment": _object("DeploymentSpec", "DeploymentStatus"),
    "DeploymentSpec": {
        1: n("replicas", keep=True),
        2: m("selector", "LabelSelector"),
        3: m("template", "PodTemplateSpec"),
        4: m("strategy", "DeploymentStrategy"),
        5: n("minReadySeconds"),
        6: n("revisionHistoryLimit", keep=True),
        7: b("paused"),
        9: n("progressDeadlineSeconds", keep=True),
        10: s("podReplacementPolicy", keep=True),
    },
    "DeploymentStrategy": {1: s("type"), 2: m("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: m("maxUnavailable", "IntOrString"), 2: m("maxSurge", "IntOrString")},
    "DeploymentStatus": {
        1: n("observedGeneration"),
        2: n("replicas"),
        3: n("updatedReplicas"),
        4: n("availableReplicas"),
        5: n("unavailableReplicas"),
        7: n("readyReplicas"),
        8: n("collisionCount", keep=True),
        9: n("terminatingReplicas", keep=True),
    },
    "Job": _object("JobSpec", "JobStatus"),
    "JobSpec": {
        1: n("parallelism", keep=True),
        2: n("completions", keep=True),
        3: n("activeDeadlineSeconds", keep=True),
        4: m("selector", "LabelSelector"),
        5: b("manualSelector", keep=True),
        6: m("template", "PodTemplateSpec"),
        7: n("backoffLimit", keep=True),
        8: n("ttlSecondsAfterFinished", keep=True),
        9: s("completionMode", keep=True),
        10: b("suspend", keep=True),
        11: m("podFailurePolicy", "PodFailurePolicy"),
        12: n("backoffLimitPerIndex", keep=True),
        13: n("maxFailedIndexes", keep=True),
        14: s("podReplacementPolicy", keep=True),
        15: s("managedBy", keep=True),
    },
    "PodFailurePolicy": {1: ms("rules", "PodFailurePolicyRule")},
    "PodFailurePolicyRule": {
        1: s("action", keep=True),
        2: m("onExitCodes", "PodFailurePolicyOnExitCodesRequirement"),
        3: ms("onPodConditions", "PodFailurePolicyOnPodConditionsPattern"),
    },
    "PodFailurePolicyOnExitCodesRequirement": {
        1: s("containerName", keep=True),
        2: s("operator", keep=True),
        3: Field("values", "int", repeated=True),
    },
    "PodFailurePolicyOnPodConditionsPattern": {1: s("type", keep=True), 2: s("status", keep=True)},
    "JobStatus": {
        1: ms("conditions", "JobCondition"),
        2: m("startTime", "Time"),
        3: m("completionTime", "Time"),
        4: n("active"),
        5: n("succeeded"),
        6: n("failed"),
        7: s("completedIndexes"),
        9: n("ready", keep=True),
        11: n("terminating", keep=True),
    },
    "JobCondition": {
        1: s("type", keep=True),
        2: s("status", keep=True),
        3: m("lastProbeTime", "Time"),
        4: m("lastTransitionTime", "Time"),
        5: s("reason"),
        6: s("message"),
    },
    "CronJob": _object("CronJobSpec", "CronJobStatus"),
    "CronJobSpec": {
        1: s("schedule", keep=True),
        2: n("startingDeadlineSeconds", keep=True),
        3: s("concurrencyPolicy"),
        4: b("suspend", keep=True),
        5: m("jobTemplate", "JobTemplateSpec"),
        6: n("successfulJobsHistoryLimit", keep=True),
        7: n("failedJobsHistoryLimit", keep=True),
        8: s("timeZone", keep=True),
    },
    "JobTemplateSpec": {1: m("metadata", "ObjectMeta"), 2: m("spec", "JobSpec")},
    "CronJobStatus": {
        1: ms("active", "ObjectReference"),
        4: m("lastScheduleTime", "Time"),
        5: m("lastSuccessfulTime", "Time"),
    },
}

RBAC: dict[str, Table] = {
    "Role": {1: m("metadata", "ObjectMeta"), 2: ms("rules", "PolicyRule")},
    "ClusterRole": {
        1: m("metadata", "ObjectMeta"),
        2: ms("rules", "PolicyRule"),
        3: m("aggregationRule", "AggregationRule"),
    },
    "AggregationRule": {1: ms("clusterRoleSelectors", "LabelSelector")},
    "PolicyRule": {
        1: strs("verbs"),
        2: strs("apiGroups"),
        3: strs("resources"),
        4: strs("resourceNames"),
        5: strs("nonResourceURLs"),
    },
    "RoleBinding": {1: m("metadata", "ObjectMeta"), 2: ms("subjects", "Subject"), 3: m("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: m("metadata", "ObjectMeta"), 2: ms("subjects", "Subject"), 3: m("roleRef", "RoleRef")},
    "Subject": {1: s("kind", keep=True), 2: s("apiGroup"), 3: s("name", keep=True), 4: s("namespace")},
    "RoleRef": {1: s("apiGroup", keep=True), 2: s("kind", keep=True), 3: s("name", keep=True)},
}

OTHER_GROUPS: dict[str, Table] = {
    "Lease": {1: m("metadata", "ObjectMeta"), 2: m("spec", "LeaseSpec")},
    "LeaseSpec": {
        1: s("holderIdentity", keep=True),
        2: n("leaseDurationSeconds", keep=True),
        3: m("acquireTime", "MicroTime"),
        4: m("renewTime", "MicroTime"),
        5: n("leaseTransitions", keep=True),
        6: s("strategy", keep=True),
        7: s("preferredHolder", keep=True),
    },
    "TokenRequest": _object("TokenRequestSpec", "TokenRequestStatus"),
    "TokenRequestSpec": {
        1: strs("audiences"),
        3: m("boundObjectRef", "BoundObjectReference"),
        4: n("expirationSeconds", keep=True),
    },
    "BoundObjectReference": {1: s("kind"), 2: s("apiVersion"), 3: s("name"), 4: s("uid")},
    "TokenRequestStatus": {1: s("token", keep=True), 2: m("expirationTimestamp", "Time")},
    "Ingress": _object("IngressSpec", "IngressStatus"),
    "IngressSpec": {
        1: m("defaultBackend", "IngressBackend"),
        2: ms("tls", "IngressTLS"),
        3: ms("rules", "IngressRule"),
        4: s("ingressClassName", keep=True),
    },
    "IngressBackend": {3: m("resource", "TypedLocalObjectReference"), 4: m("service", "IngressServiceBackend")},
    "IngressServiceBackend": {1: s("name", keep=True), 2: m("port", "ServiceBackendPort")},
    "ServiceBackendPort": {1: s("name"), 2: n("number")},
    "IngressTLS": {1: strs("hosts"), 2: s("secretName")},
    "IngressRule": {1: s("host"), 2: inline("IngressRuleValue")},
    "IngressRuleValue": {1: m("http", "HTTPIngressRuleValue")},
    "HTTPIngressRuleValue": {1: ms("paths", "HTTPIngressPath")},
    "HTTPIngressPath": {1: s("path"), 2: m("backend", "IngressBackend"), 3: s("pathType", keep=True)},
    "IngressStatus": {1: m("loadBalancer", "IngressLoadBalancerStatus")},
    "IngressLoadBalancerStatus": {1: ms("ingress", "LoadBalancerIngress")},
    "PodDisruptionBudget": _object("PodDisruptionBudgetSpec", "PodDisruptionBudgetStatus"),
    "PodDisruptionBudgetSpec": {
        1: m("minAvailable", "IntOrString"),
        2: m("selector", "LabelSelector"),
        3: m("maxUnavailable", "IntOrString"),
        4: s("unhealthyPodEvictionPolicy", keep=True),
    },
    "PodDisruptionBudgetStatus": {
        1: n("observedGeneration"),
        3: n("disruptionsAllowed", keep=True),
        4: n("currentHealthy", keep=True),
        5: n("desiredHealthy", keep=True),
        6: n("expectedPods", keep=True),
    },
    "HorizontalPodAutoscaler": _object("HorizontalPodAutoscalerSpec", "HorizontalPodAutoscalerStatus"),
    "HorizontalPodAutoscalerSpec": {
        1: m("scaleTargetRef", "CrossVersionObjectReference"),
        2: n("minReplicas", keep=True),
        3: n("maxReplicas", keep=True),
        4: n("targetCPUUtilizationPercentage", keep=True),
    },
    "CrossVersionObjectReference": {1: s("kind", keep=True), 2: s("name", keep=True), 3: s("apiVersion")},
    "HorizontalPodAutoscalerStatus": {
        1: n("observedGeneration", keep=True),
        2: m("lastScaleTime", "Time"),
        3: n("currentReplicas", keep=True),
        4: n("desiredReplicas", keep=True),
        5: n("currentCPUUtilizationPercentage", keep=True),
    },
    "PriorityClass": {
        1: m("metadata", "ObjectMeta"),
        2: n("value", keep=True),
        3: b("globalDefault"),
        4: s("description"),
        5: s("preemptionPolicy", keep=True),
    },
    "CertificateSigningRequest": _object("CertificateSigningRequestSpec", "CertificateSigningRequestStatus"),
    "CertificateSigningRequestSpec": {
        1: Field("request", "bytes", keep=True),
        2: s("username"),
        3: s("uid"),
        4: strs("groups"),
        5: strs("usages"),
        6: smap("extra", "StringList"),
        7: s("signerName", keep=True),
        8: n("expirationSeconds", keep=True),
    },
    "CertificateSigningRequestStatus": {
        1: ms("conditions", "CertificateSigningRequestCondition"),
        2: Field("certificate", "bytes"),
    },
    "CertificateSigningRequestCondition": {
        1: s("type", keep=True),
        2: s("reason"),
        3: s("message"),
        4: m("lastUpdateTime", "Time"),
        5: m("lastTransitionTime", "Time"),
        6: s("status", keep=True),
    },
}

MESSAGES: dict[str, Table] = {
    **META,
    **CORE_OBJECTS,
    **POD_SPEC,
    **CONTAINER,
    **VOLUMES,
    **AFFINITY,
    **WORKLOADS,
    **RBAC,
    **OTHER_GROUPS,
}

# (apiVersion, kind) of an envelope -> the message its `raw` bytes hold.
KINDS: dict[tuple[str, str], str] = {
    **{
        ("v1", kind): kind
        for kind in ("Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "Pod", "ResourceQuota")
    },
    ("apps/v1", "Deployment"): "Deployment",
    ("batch/v1", "Job"): "Job",
    ("batch/v1", "CronJob"): "CronJob",
    **{
        ("rbac.authorization.k8s.io/v1", kind): kind
        for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
    },
    ("coordination.k8s.io/v1", "Lease"): "Lease",
    ("authentication.k8s.io/v1", "TokenRequest"): "TokenRequest",
    ("networking.k8s.io/v1", "Ingress"): "Ingress",
    ("autoscaling/v1", "HorizontalPodAutoscaler"): "HorizontalPodAutoscaler",
    ("policy/v1", "PodDisruptionBudget"): "PodDisruptionBudget",
    ("scheduling.k8s.io/v1", "PriorityClass"): "PriorityClass",
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): "CertificateSigningRequest",
}
