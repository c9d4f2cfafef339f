"""The manifests in deploy/kubernetes/: valid against the Kubernetes API schemas of a named version
(strict: an unknown or misspelt field fails), and consistent with what the launcher does with the
env the Deployment sets: the grace period covers SHUTDOWN_DELAY + GRACEFUL_TIMEOUT, the probes
reach the operations listener, the Service reaches the app's port, the selectors select the pods,
and the CPU and memory limits give the worker count the comments and the docs claim."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from launcher import Backend
from launcher.config.resolve import resolve, worker_bound
from launcher.config.resources import memory_cap
from launcher.config.settings import BY_ENV

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
OPERATIONS = ROOT / "docs" / "operations.md"

#: The Kubernetes version whose API schemas the manifests are validated against: the newest that
#: kubernetes-validate bundles (1.37.0 bundles 1.25 to 1.37).
KUBERNETES_VERSION = "1.37.0"

#: Seconds beyond SHUTDOWN_DELAY + GRACEFUL_TIMEOUT the pod gets for the workers' exit and the
#: master's clean-up before the kubelet's SIGKILL.
GRACE_MARGIN = 5

#: The UID the image documents for non-root use.
NON_ROOT_UID = 10001

Resource = dict[str, Any]


def _documents() -> list[tuple[str, Resource]]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


DOCUMENTS = _documents()
API_DOCUMENTS = [(name, doc) for name, doc in DOCUMENTS if doc.get("kind") != "Kustomization"]


def _one(kind: str) -> Resource:
    found = [doc for _, doc in API_DOCUMENTS if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in {MANIFESTS}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment() -> Resource:
    return _one("Deployment")


@pytest.fixture(scope="module")
def pod(deployment: Resource) -> Resource:
    template: Resource = deployment["spec"]["template"]
    return template


@pytest.fixture(scope="module")
def container(pod: Resource) -> Resource:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1, "the checks below assume one container (the launcher)"
    first: Resource = containers[0]
    return first


@pytest.fixture(scope="module")
def env(container: Resource) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in container.get("env", []):
        assert "value" in item, f"{item['name']}: valueFrom cannot be checked here, set a value"
        values[item["name"]] = item["value"]
    return values


def setting(env: dict[str, str], name: str) -> Any:
    """The value the launcher reads for ``name`` from this env: parsed by its own settings table,
    the default when absent or empty (as ``launcher.config.effective_env`` treats empty)."""
    raw = env.get(name, "")
    if not raw.strip():
        return BY_ENV[name].default
    return BY_ENV[name].parse(raw)


def container_port(container: Resource, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert name in ports, f"the container has no port named {name!r} (it has {sorted(ports)})"
    return int(ports[name])


def labels_match(selector: Resource, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a pod's labels."""
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return False  # an empty selector selects every pod of the namespace: not what is meant
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def quantity(raw: str | int | float) -> Decimal:
    """A Kubernetes resource quantity (``2``, ``1500m``, ``512Mi``, ``1e9``) as a number."""
    text = str(raw).strip()
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?", text)
    assert match, f"not a Kubernetes quantity: {raw!r}"
    return Decimal(match[1]) * Decimal(_SUFFIXES.get(match[2] or "", 1))


def workers_from_limits(container: Resource, env: dict[str, str]) -> tuple[int, str]:
    """What the launcher computes in this container: the CPU limit becomes the cgroup quota
    (``cpu.max``) that ``launcher.cpus.cpu_budget`` rounds up, the memory limit becomes
    ``memory.max``; both go through the launcher's own formula."""
    limits = container["resources"]["limits"]
    cpus = max(1, math.ceil(quantity(limits["cpu"])))
    memory_limit = int(quantity(limits["memory"]))
    return worker_bound(
        cpus,
        setting(env, "WORKERS_PER_CORE"),
        setting(env, "MAX_WORKERS"),
        setting(env, "WEB_CONCURRENCY"),
        memory_limit,
        setting(env, "WORKER_MEMORY"),
    )


# -- the schemas --------------------------------------------------------------------------------


def test_the_named_version_is_bundled() -> None:
    assert KUBERNETES_VERSION in all_versions()


def test_there_are_manifests() -> None:
    kinds = sorted(doc["kind"] for _, doc in API_DOCUMENTS)
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]


@pytest.mark.parametrize(
    "resource", [doc for _, doc in API_DOCUMENTS], ids=[f"{n}:{d['kind']}" for n, d in API_DOCUMENTS]
)
def test_manifest_is_valid_against_the_api_schema(resource: Resource) -> None:
    # Strict: additionalProperties are refused, so a misspelt or misplaced field fails. A kind
    # the version does not know raises SchemaNotFoundError, which fails too.
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{resource['kind']}/{resource['metadata']['name']}: {where}: {exc.message}")


def test_kustomization_lists_every_manifest() -> None:
    kustomizations = [doc for _, doc in DOCUMENTS if doc.get("kind") == "Kustomization"]
    if not kustomizations:
        pytest.skip("no kustomization.yaml")
    listed = kustomizations[0].get("resources", [])
    assert sorted(listed) == sorted({name for name, _ in API_DOCUMENTS})


# -- the env the launcher reads -----------------------------------------------------------------


def test_every_env_variable_is_a_launcher_setting_and_parses(env: dict[str, str]) -> None:
    # A misspelt name would be ignored by the launcher (its default applies), a bad value stops it.
    unknown = sorted(set(env) - set(BY_ENV))
    assert not unknown, f"not launcher settings: {unknown}"
    for name, raw in env.items():
        BY_ENV[name].parse(raw)  # ConfigError names the variable


def test_grace_period_covers_shutdown_delay_and_drain(pod: Resource, env: dict[str, str]) -> None:
    delay = setting(env, "SHUTDOWN_DELAY")
    drain = setting(env, "GRACEFUL_TIMEOUT")
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)  # the API's default
    assert grace > delay + drain, (
        f"terminationGracePeriodSeconds {grace} must exceed SHUTDOWN_DELAY {delay} + GRACEFUL_TIMEOUT {drain}"
    )
    assert grace >= delay + drain + GRACE_MARGIN, f"leave at least {GRACE_MARGIN} s for the exit"


def test_shutdown_delay_is_set(env: dict[str, str]) -> None:
    # Without it the pod stops accepting while nodes and ingresses still route to it.
    assert setting(env, "SHUTDOWN_DELAY") > 0


def test_no_pre_stop_hook_adds_to_the_delay(container: Resource) -> None:
    # A preStop hook runs before SIGTERM and counts against the same grace period; SHUTDOWN_DELAY
    # already does what a `sleep` hook would.
    assert "preStop" not in container.get("lifecycle", {})


# -- the operations listener and its probes -----------------------------------------------------


def test_ops_port_env_is_the_ops_container_port(container: Resource, env: dict[str, str]) -> None:
    assert setting(env, "OPS_PORT") is not None, "OPS_PORT must be set for the probes"
    assert setting(env, "OPS_PORT") == container_port(container, "ops")


def test_the_ops_listener_listens_where_the_kubelet_probes(env: dict[str, str], tmp_path: Path) -> None:
    # The kubelet probes the pod's address: OPS_HOST's default follows the app's bind, so the
    # manifest's app must listen on every interface (or OPS_HOST be set to).
    (tmp_path / "main.py").write_text("app = None\n")
    config = resolve({**env, "APP_DIR": str(tmp_path)}, Backend)
    assert config.ops_host in ("0.0.0.0", "::"), config.ops_host


@pytest.mark.parametrize(
    ("probe", "paths"),
    [("livenessProbe", {"/livez"}), ("readinessProbe", {"/readyz"}), ("startupProbe", {"/livez", "/readyz"})],
)
def test_probe_asks_the_ops_listener(container: Resource, probe: str, paths: set[str]) -> None:
    if probe == "startupProbe" and probe not in container:
        pytest.skip("no startupProbe")
    assert probe in container, f"no {probe}"
    get = container[probe].get("httpGet")
    assert get is not None, f"{probe} must be an httpGet on the ops port"
    assert get["port"] == "ops", f"{probe} port {get['port']!r}, not the named port 'ops'"
    assert get["path"] in paths, f"{probe} path {get['path']!r}, expected one of {sorted(paths)}"
    container_port(container, "ops")  # the name resolves


def test_readiness_notices_the_shutdown_within_the_delay(container: Resource, env: dict[str, str]) -> None:
    probe = container["readinessProbe"]
    noticed = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    assert noticed <= setting(env, "SHUTDOWN_DELAY"), (
        f"readiness turns false after {noticed} s, later than SHUTDOWN_DELAY"
    )


def test_prometheus_annotations_point_at_the_ops_listener(pod: Resource, env: dict[str, str]) -> None:
    annotations = pod["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert int(annotations["prometheus.io/port"]) == setting(env, "OPS_PORT")
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"


# -- the Service and the selectors --------------------------------------------------------------


def test_service_targets_the_app_port(container: Resource, env: dict[str, str]) -> None:
    service = _one("Service")
    app_port = setting(env, "PORT")
    assert "BIND" not in env, "the checks read PORT; with BIND set they would not hold"
    assert container_port(container, "http") == app_port
    for port in service["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        resolved = container_port(container, target) if isinstance(target, str) else target
        assert resolved == app_port, (
            f"Service port {port['port']} goes to {resolved}, the app is on {app_port}"
        )


def test_service_selects_the_pods(pod: Resource) -> None:
    assert labels_match({"matchLabels": _one("Service")["spec"]["selector"]}, pod["metadata"]["labels"])


def test_deployment_selects_its_pods(deployment: Resource, pod: Resource) -> None:
    assert labels_match(deployment["spec"]["selector"], pod["metadata"]["labels"])


def test_pdb_selects_the_pods(pod: Resource) -> None:
    assert labels_match(_one("PodDisruptionBudget")["spec"]["selector"], pod["metadata"]["labels"])


def test_topology_spread_selects_the_pods(pod: Resource) -> None:
    for constraint in pod["spec"].get("topologySpreadConstraints", []):
        assert labels_match(constraint["labelSelector"], pod["metadata"]["labels"])


def test_hpa_scales_the_deployment(deployment: Resource, container: Resource) -> None:
    hpa = _one("HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    # Utilization is a share of the request: without a CPU request the HPA cannot compute it.
    cpu_targets = [
        m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"
    ]
    assert cpu_targets, "the HPA scales on CPU"
    assert "cpu" in container["resources"].get("requests", {})
    # A replica count in the Deployment would fight the HPA on every apply.
    assert "replicas" not in deployment["spec"]


def test_pdb_leaves_a_pod_serving_at_the_hpa_minimum() -> None:
    minimum = _one("HorizontalPodAutoscaler")["spec"].get("minReplicas", 1)
    pdb = _one("PodDisruptionBudget")["spec"]
    unavailable = pdb.get("maxUnavailable")
    if unavailable is not None:
        assert isinstance(unavailable, int), "checked for a whole number only"
        assert minimum - unavailable >= 1
    else:
        assert isinstance(pdb["minAvailable"], int)
        assert 1 <= pdb["minAvailable"] < minimum, "minAvailable at the minimum would block every drain"


# -- non-root, read-only ------------------------------------------------------------------------


def test_runs_as_non_root_with_nothing_extra(pod: Resource, container: Resource) -> None:
    pod_security = pod["spec"].get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}  # the container's wins
    assert security.get("runAsNonRoot") is True
    assert security.get("runAsUser") == NON_ROOT_UID
    assert security.get("allowPrivilegeEscalation") is False
    assert security.get("capabilities", {}).get("drop") == ["ALL"]
    assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    assert security.get("readOnlyRootFilesystem") is True


def test_app_port_is_bindable_without_root(container: Resource, env: dict[str, str]) -> None:
    # As UID 10001 with every capability dropped, a port below 1024 needs CAP_NET_BIND_SERVICE.
    added = container.get("securityContext", {}).get("capabilities", {}).get("add", [])
    for name in ("PORT", "OPS_PORT"):
        port = setting(env, name)
        assert port >= 1024 or "NET_BIND_SERVICE" in added, f"{name}={port} cannot be bound as non-root"


def test_tmp_is_an_in_memory_volume(pod: Resource, container: Resource) -> None:
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    assert "/tmp" in mounts, "with a read-only root filesystem /tmp must be a volume"
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    empty_dir = volumes[mounts["/tmp"]].get("emptyDir")
    assert empty_dir is not None and empty_dir.get("medium") == "Memory"


# -- the worker count ---------------------------------------------------------------------------


def _claimed(pattern: str, text: str, where: str) -> int:
    found = {int(n) for n in re.findall(pattern, text)}
    assert len(found) == 1, f"{where}: expected one claim matching {pattern!r}, found {sorted(found)}"
    return found.pop()


def test_limits_give_the_worker_count_the_deployment_comment_claims(
    container: Resource, env: dict[str, str]
) -> None:
    workers, bound = workers_from_limits(container, env)
    text = (MANIFESTS / "deployment.yaml").read_text()
    assert _claimed(r"# Worker count: (\d+)\.", text, "deployment.yaml") == workers
    # The comment says the CPU formula decides and the memory limit would allow more.
    assert bound == "cpus"
    limits = container["resources"]["limits"]
    allowed = memory_cap(int(quantity(limits["memory"])), setting(env, "WORKER_MEMORY"))
    assert allowed is not None and allowed > workers
    assert _claimed(r"// \d+ MiB = (\d+) workers", text, "deployment.yaml") == allowed


def test_limits_give_the_worker_count_the_docs_claim(container: Resource, env: dict[str, str]) -> None:
    text = OPERATIONS.read_text()
    start = text.index("## Kubernetes")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else None]
    assert (
        _claimed(r"limits give (\d+) workers", section, "docs/operations.md")
        == workers_from_limits(container, env)[0]
    )


def test_requests_equal_limits(container: Resource) -> None:
    # The Guaranteed QoS class (evicted last), and the HPA's utilisation means the same as the
    # worker formula's CPUs.
    resources = container["resources"]
    for name in ("cpu", "memory"):
        assert quantity(resources["requests"][name]) == quantity(resources["limits"][name])
