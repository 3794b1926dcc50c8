"""The deployment files in deploy/, checked by the tools an operator would run.

- every Kustomize overlay renders (`kubectl kustomize`);
- every rendered object of a core kind validates against the Kubernetes 1.28 schemas
  (`kubernetes-validate`, strict: unknown fields are errors);
- the custom resources (Argo Rollouts, ArgoCD, External Secrets, prometheus-operator), which those
  schemas do not have, are checked here for their apiVersion, required fields and references;
- every STAYBOOK_* variable the manifests set is a real setting, and the whole environment loads;
- the image's lock file pins every runtime dependency within pyproject's ranges.

No service is needed: kubectl renders offline.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from staybook.kernel.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "staging", "prod")
KUBERNETES_VERSION = "1.28.0"

# Custom resources: the apiVersion each must use and the spec fields it cannot do without.
CUSTOM_KINDS = {
    "Rollout": ("argoproj.io/v1alpha1", ("selector", "strategy")),
    "AnalysisTemplate": ("argoproj.io/v1alpha1", ("metrics",)),
    "Application": ("argoproj.io/v1alpha1", ("project", "source", "destination")),
    "AppProject": ("argoproj.io/v1alpha1", ("sourceRepos", "destinations")),
    "ExternalSecret": ("external-secrets.io/v1beta1", ("secretStoreRef", "target", "data")),
    "ClusterSecretStore": ("external-secrets.io/v1beta1", ("provider",)),
    "PodMonitor": ("monitoring.coreos.com/v1", ("selector", "podMetricsEndpoints")),
}
APP_NAMESPACE = "staybook"
TEMPLATE_FIELD = re.compile(r"\{\{\s*\.(\w+)(\s*\|\s*urlquery)?\s*\}\}")


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path, "kubectl is needed to render deploy/k8s (it is on the build machines; see deploy/README.md)"
    return path


@functools.cache
def render(overlay: str) -> tuple[dict, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    objects = tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
    assert objects, f"{overlay} rendered nothing"
    return objects


def by_kind(objects, kind: str) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def one(objects, kind: str, name: str) -> dict:
    found = by_kind(objects, kind)
    assert name in found, f"no {kind} {name!r} in the render (have {sorted(found)})"
    return found[name]


def pod_specs(objects):
    """(kind/name, pod spec) of every workload, including the Job an AnalysisTemplate starts."""
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
            yield name, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "AnalysisTemplate":
            for metric in obj["spec"]["metrics"]:
                job = metric["provider"].get("job")
                if job:
                    yield f"{name}/{metric['name']}", job["spec"]["template"]["spec"]


def argocd_applications() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "argocd").glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


# --------------------------------------------------------------------------- rendering and schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_whole_application(overlay):
    objects = render(overlay)
    kinds = {obj["kind"] for obj in objects}
    for kind in (
        "Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Rollout", "Job", "Service",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Ingress", "ExternalSecret",
        "AnalysisTemplate", "DaemonSet", "PodMonitor", "ClusterSecretStore",
    ):  # fmt: skip
        assert kind in kinds, f"{overlay} renders no {kind}"
    assert set(by_kind(objects, "Deployment")) == {"api", "worker", "pgbouncer"}
    names = [(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]) for obj in objects]
    assert len(names) == len(set(names)), "two objects with the same kind, namespace and name"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_validate_against_kubernetes_1_28(overlay):
    checked = 0
    for obj in render(overlay):
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {error.message} at {list(error.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{overlay}: {obj['kind']} {obj['apiVersion']} is not a Kubernetes 1.28 kind")
        checked += 1
    assert checked >= 30


def test_the_schema_validator_refuses_what_kubernetes_would():
    """The check above is only worth something if a wrong object fails it."""
    deployment = json.loads(json.dumps(one(render("prod"), "Deployment", "worker")))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystm"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = json.loads(json.dumps(one(render("prod"), "Deployment", "worker")))
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_have_their_api_version_and_required_fields(overlay):
    objects = [obj for obj in render(overlay) if obj["kind"] in CUSTOM_KINDS]
    objects += argocd_applications()
    for obj in objects:
        api_version, required = CUSTOM_KINDS[obj["kind"]]
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["apiVersion"] == api_version, where
        assert obj["metadata"]["name"], where
        for field in required:
            assert obj["spec"].get(field), f"{where} has no spec.{field}"


# --------------------------------------------------------------------------- the API's rollout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_rollout_is_blue_green_over_the_deployment_with_analysis(overlay):
    objects = render(overlay)
    rollout = one(objects, "Rollout", "api")
    deployment = one(objects, "Deployment", rollout["spec"]["workloadRef"]["name"])
    assert rollout["spec"]["workloadRef"]["kind"] == "Deployment"
    # The Deployment is the template only; the Rollout runs the pods.
    assert deployment["spec"]["replicas"] == 0
    assert rollout["spec"]["selector"] == deployment["spec"]["selector"]
    blue_green = rollout["spec"]["strategy"]["blueGreen"]
    services = by_kind(objects, "Service")
    for role in ("activeService", "previewService"):
        service = services[blue_green[role]]
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    templates = by_kind(objects, "AnalysisTemplate")
    for phase in ("prePromotionAnalysis", "postPromotionAnalysis"):
        analysis = blue_green[phase]
        passed = {arg["name"] for arg in analysis.get("args", [])}
        for ref in analysis["templates"]:
            template = templates[ref["templateName"]]
            needed = {arg["name"] for arg in template["spec"].get("args", []) if "value" not in arg}
            assert needed <= passed, f"{ref['templateName']} needs {needed - passed}"
            declared = {arg["name"] for arg in template["spec"].get("args", [])}
            used = set(re.findall(r"\{\{args\.([\w-]+)\}\}", json.dumps(template["spec"])))
            assert used <= declared, f"{ref['templateName']} uses undeclared args {used - declared}"
    post = {ref["templateName"] for ref in blue_green["postPromotionAnalysis"]["templates"]}
    assert post == {"success-rate", "latency-p99"}


def test_rollback_thresholds_are_the_platform_ones():
    templates = by_kind(render("prod"), "AnalysisTemplate")
    success = templates["success-rate"]["spec"]["metrics"][0]
    latency = templates["latency-p99"]["spec"]["metrics"][0]
    # Error rate > 0.5% for 2 min; p99 > 1,000 ms for 3 min; one failed measurement aborts.
    assert "result[0] >= 0.995" in success["successCondition"]
    assert re.search(r"\[2m:\d+s\]\)\s*$", success["provider"]["prometheus"]["query"].strip() + "\n")
    assert "staybook_http_requests_total" in success["provider"]["prometheus"]["query"]
    assert 'status!~"5.."' in success["provider"]["prometheus"]["query"]
    assert "result[0] <= 1.0" in latency["successCondition"]
    assert "histogram_quantile(0.99" in latency["provider"]["prometheus"]["query"]
    assert "staybook_http_request_duration_seconds_bucket" in latency["provider"]["prometheus"]["query"]
    assert re.search(r"\[3m:\d+s\]\)\s*$", latency["provider"]["prometheus"]["query"].strip() + "\n")
    assert success["failureLimit"] == 0 and latency["failureLimit"] == 0
    # The analysis tells the versions apart by the label the PodMonitor copies from the pods.
    monitor = one(render("prod"), "PodMonitor", "staybook-api")
    assert "rollouts-pod-template-hash" in monitor["spec"]["podTargetLabels"]


# --------------------------------------------------------------------------- scaling and placement


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_autoscaler_scales_the_rollout_on_cpu_memory_and_request_rate(overlay):
    objects = render(overlay)
    hpa = one(objects, "HorizontalPodAutoscaler", "api")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("argoproj.io/v1alpha1", "Rollout", "api")
    resources = {
        m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"
    }
    assert resources["cpu"] == {"type": "Utilization", "averageUtilization": 70}
    assert resources["memory"] == {"type": "Utilization", "averageUtilization": 75}
    (pods,) = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    # prometheus-adapter serves that name from the app's request counter.
    adapter = one(objects, "ConfigMap", "prometheus-adapter-staybook")
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    served = {rule["name"]["as"]: rule for rule in rules}
    rule = served[pods["metric"]["name"]]
    assert "staybook_http_requests_total" in rule["seriesQuery"]
    assert "rate(<<.Series>>{<<.LabelMatchers>>}[2m])" in rule["metricsQuery"]
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_prod_spreads_every_workload_across_three_zones():
    for name, deployment in by_kind(render("prod"), "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        zone = [c for c in spec["topologySpreadConstraints"] if c["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zone and zone[0]["minDomains"] == 3 and zone[0]["whenUnsatisfiable"] == "DoNotSchedule", name
        assert zone[0]["labelSelector"]["matchLabels"].items() <= spec_labels(deployment).items(), name


def spec_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_cover_api_worker_and_pgbouncer(overlay):
    objects = render(overlay)
    budgets = by_kind(objects, "PodDisruptionBudget")
    workloads = {**by_kind(objects, "Deployment")}
    for name in ("api", "worker", "pgbouncer"):
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= spec_labels(workloads[name]).items(), name


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_pods_are_restricted(overlay):
    objects = render(overlay)
    namespace = one(objects, "Namespace", APP_NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    accounts = by_kind(objects, "ServiceAccount")
    for where, spec in pod_specs(obj for obj in objects if obj["metadata"].get("namespace") == APP_NAMESPACE):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        assert accounts[spec["serviceAccountName"]]["automountServiceAccountToken"] is False, where
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context["seccompProfile"]["type"] == "RuntimeDefault", where
            assert container["resources"]["requests"] and container["resources"]["limits"], where
    roles = {spec["serviceAccountName"] for where, spec in pod_specs(objects) if "Deployment/" in where}
    assert {"staybook-api", "staybook-worker", "pgbouncer"} <= roles


def test_api_probes_and_writable_tmp():
    api = one(render("prod"), "Deployment", "api")["spec"]["template"]["spec"]
    (container,) = api["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    # A read-only root filesystem: /tmp and the metrics directory the image names are emptyDirs.
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    multiproc = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", dockerfile).group(1)
    assert {"/tmp", multiproc} <= mounts
    assert container["args"][0] == "serve"


def test_network_policies_deny_by_default_and_admit_only_the_ingress_to_the_api():
    objects = render("prod")
    policies = by_kind(objects, "NetworkPolicy")
    default = policies["default-deny"]["spec"]
    assert default["podSelector"] == {} and set(default["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in default and "egress" not in default
    api_sources = [peer for rule in policies["api-ingress"]["spec"]["ingress"] for peer in rule["from"]]
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in api_sources
        if "namespaceSelector" in peer
    }
    assert namespaces == {"ingress-nginx", "monitoring"}
    # The pooler takes connections from the app's pods and nothing else; NATS likewise.
    (pooler_rule,) = policies["pgbouncer"]["spec"]["ingress"]
    (peer,) = pooler_rule["from"]
    components = {e["key"]: e["values"] for e in peer["podSelector"]["matchExpressions"]}
    assert components["app.kubernetes.io/component"] == ["api", "worker"]
    nats = [p for p in policies.values() if p["metadata"].get("namespace") == "nats"]
    assert nats, "no policy guards the NATS namespace"


def test_ingress_carries_the_waf_rules_body_cap_and_rate_limit():
    ingresses = by_kind(render("prod"), "Ingress")
    main = ingresses["staybook"]["metadata"]["annotations"]
    assert main["nginx.ingress.kubernetes.io/enable-modsecurity"] == "true"
    assert main["nginx.ingress.kubernetes.io/enable-owasp-core-rules"] == "true"
    assert "SecRuleEngine On" in main["nginx.ingress.kubernetes.io/modsecurity-snippet"]
    assert main["nginx.ingress.kubernetes.io/proxy-body-size"] == "8k"
    # 2,000 requests per 5 minutes per address: 400 a minute, a burst of 5 minutes' worth.
    rpm = int(main["nginx.ingress.kubernetes.io/limit-rpm"])
    burst = int(main["nginx.ingress.kubernetes.io/limit-burst-multiplier"])
    assert rpm * 5 == 2000 and rpm * burst == 2000
    # Larger bodies only where the app's gateway allows them, with the app's own limit.
    gateway = Settings().gateway
    for name, ingress in ingresses.items():
        annotations = ingress["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/enable-modsecurity"] == "true", name
        assert annotations["nginx.ingress.kubernetes.io/limit-rpm"] == str(rpm), name
        if name == "staybook":
            continue
        size = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
        limit = int(size[:-1]) * {"k": 1024, "m": 1024 * 1024}[size[-1]]
        for path in (p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]):
            pattern = "^" + path
            assert gateway.large_body_routes.get(pattern) == limit, f"{name} {path}: the app allows otherwise"


# --------------------------------------------------------------------------- configuration and secrets


def rendered_environment(objects) -> tuple[dict[str, str], set[str]]:
    """The API container's STAYBOOK_* environment with secrets filled by stand-ins, and the keys."""
    api = one(objects, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    configmaps = by_kind(objects, "ConfigMap")
    externals = {obj["spec"]["target"]["name"]: obj for obj in by_kind(objects, "ExternalSecret").values()}
    environment: dict[str, str] = {}
    for source in api["envFrom"]:
        if "configMapRef" in source:
            environment.update(configmaps[source["configMapRef"]["name"]]["data"])
        else:
            template = externals[source["secretRef"]["name"]]["spec"]["target"]["template"]["data"]
            environment.update({key: fill_template(value) for key, value in template.items()})
    environment.update({e["name"]: e["value"] for e in api["env"] if "value" in e})
    return environment, set(environment)


STAND_INS = {
    "jwt_keys": '{"k1": "a-jwt-signing-key-of-thirty-two-bytes-or-more"}',
    "jwt_active_key_id": "k1",
    "pii_master_key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "redis_host": "clustercfg.staybook.cache.amazonaws.com",
}


def fill_template(value: str) -> str:
    return TEMPLATE_FIELD.sub(lambda m: STAND_INS.get(m.group(1), f"stand-in-{m.group(1).replace('_', '-')}"), value)


def setting_exists(variable: str) -> bool:
    path = variable.removeprefix("STAYBOOK_").lower().split("__")
    model = Settings
    for part in path[:-1]:
        field = model.model_fields.get(part)
        if field is None or not hasattr(field.annotation, "model_fields"):
            return False
        model = field.annotation
    return path[-1] in model.model_fields


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_staybook_variable_is_a_setting_and_the_environment_loads(overlay, monkeypatch):
    environment, keys = rendered_environment(render(overlay))
    unknown = sorted(key for key in keys if key.startswith("STAYBOOK_") and not setting_exists(key))
    assert not unknown, f"not settings (src/staybook/kernel/settings.py): {unknown}"
    for key in list(os.environ):
        if key.startswith("STAYBOOK_"):
            monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.database_url.startswith("postgresql+asyncpg://") and "@pgbouncer:6432/" in settings.database_url
    assert settings.database_replica_url and settings.database_replica_url.endswith("/staybook_ro")
    assert settings.redis_url.startswith("rediss://")
    assert settings.metrics.token is not None and not settings.uses_demo_secrets()
    assert settings.search.backend == "typesense" and settings.http_host == "0.0.0.0"
    assert settings.gateway.trusted_proxies, "the ingress controller's addresses must be trusted for X-Forwarded-For"
    # Named prepared statements survive transaction pooling only with PgBouncer's own tracking.
    if settings.database_prepared_statements:
        ini = next(c for n, c in by_kind(render(overlay), "ConfigMap").items() if n.startswith("pgbouncer-config"))
        assert re.search(r"^max_prepared_statements = [1-9]", ini["data"]["pgbouncer.ini"], re.M)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_external_secrets_produce_every_secret_the_pods_read(overlay):
    objects = render(overlay)
    stores = by_kind(objects, "ClusterSecretStore")
    produced = {}
    for name, external in by_kind(objects, "ExternalSecret").items():
        spec = external["spec"]
        assert spec["secretStoreRef"]["name"] in stores, name
        declared = {entry["secretKey"] for entry in spec["data"]}
        assert all(entry["remoteRef"]["key"].startswith("staybook/") for entry in spec["data"]), name
        template = spec["target"].get("template", {}).get("data", {})
        used = {m.group(1) for value in template.values() for m in TEMPLATE_FIELD.finditer(value)}
        assert used <= declared, f"{name} template uses undeclared {used - declared}"
        produced[spec["target"]["name"]] = set(template) or declared
    for where, spec in pod_specs(objects):
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in produced, f"{where} reads an unmanaged secret"
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                secret = volume["secret"]["secretName"]
                assert secret in produced, f"{where} mounts an unmanaged secret"
    pgbouncer_ini = one(
        objects, "ConfigMap", next(n for n in by_kind(objects, "ConfigMap") if n.startswith("pgbouncer-config"))
    )
    ini = pgbouncer_ini["data"]["pgbouncer.ini"]
    assert re.search(r"^pool_mode = transaction$", ini, re.M)
    assert re.search(r"^max_prepared_statements = [1-9]\d*$", ini, re.M)
    for included in re.findall(r"^%include (\S+)$", ini, re.M):
        assert Path(included).name in produced["pgbouncer"], included
    image = one(objects, "Deployment", "pgbouncer")["spec"]["template"]["spec"]["containers"][0]["image"]
    major, minor = (int(part) for part in re.search(r":v?(\d+)\.(\d+)", image).groups())
    assert (major, minor) >= (1, 21), f"{image}: max_prepared_statements needs PgBouncer 1.21"


def test_argocd_has_one_application_per_environment_pointing_at_its_overlay():
    applications = [doc for doc in argocd_applications() if doc["kind"] == "Application"]
    paths = {app["spec"]["source"]["path"] for app in applications}
    assert paths == {f"deploy/k8s/overlays/{overlay}" for overlay in OVERLAYS}
    projects = {doc["metadata"]["name"] for doc in argocd_applications() if doc["kind"] == "AppProject"}
    for app in applications:
        assert app["spec"]["project"] in projects
        assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()
        assert app["spec"]["destination"]["namespace"] == APP_NAMESPACE


# --------------------------------------------------------------------------- the image


def test_dockerfile_runs_every_role_as_non_root_with_a_healthcheck():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", dockerfile, re.M)
    assert len(stages) >= 2, "multi-stage"
    assert all(image.startswith("python:3.11-slim") for image, _ in stages), stages
    assert re.search(r'^ENTRYPOINT \["staybook"\]$', dockerfile, re.M)
    assert re.search(r'^CMD \["serve"\]$', dockerfile, re.M)
    user = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert user and not user[-1].startswith(("root", "0")), "the last USER must not be root"
    assert re.search(r"^HEALTHCHECK .*CMD", dockerfile, re.M)
    assert "requirements.lock" in dockerfile
    # The Alembic history is package data of the wheel (staybook/migrations/): nothing is copied beside it,
    # and the build context holds no top-level migrations/ folder to copy.
    assert re.search(r"pip install --no-deps /src/dist/staybook-\*\.whl", dockerfile)
    assert not re.search(r"^COPY migrations\b", dockerfile, re.M)
    assert (Path(__file__).resolve().parents[2] / "src/staybook/migrations/env.py").exists()
    # One image, every role by command: the commands exist.
    commands = subprocess.run(
        [str(Path(sys.executable).with_name("staybook")), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for role in ("serve", "worker", "migrate"):
        assert re.search(rf"^\W*{role}\b", commands, re.M), role


REGENERATE_LOCK = ".venv/bin/python deploy/lock.py > deploy/requirements.lock"


def lock_file() -> dict[str, str]:
    pins = {}
    for line in (DEPLOY / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_lock_file_pins_every_runtime_dependency_within_pyproject_ranges():
    pins = lock_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux"}
    image_extras = re.search(r"^IMAGE_EXTRAS = \((.*)\)$", (DEPLOY / "lock.py").read_text(), re.M).group(1)
    extras = [extra.strip(' "') for extra in image_extras.split(",") if extra.strip()]
    assert {"s3", "typesense", "recovery"} <= set(extras), "the image serves photos from S3, searches in Typesense"
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    for requirement in requirements:
        if requirement.marker and not requirement.marker.evaluate({**target, "extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in deploy/requirements.lock (regenerate it: {REGENERATE_LOCK})"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} is outside {requirement} (regenerate: {REGENERATE_LOCK})"
        )
    # Closed: what each locked package needs is locked too (checked where the installed version is the
    # locked one, i.e. the metadata read is that version's).
    for name, version in pins.items():
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if distribution.version != version:
            continue
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({**target, "extra": ""}):
                continue
            assert canonicalize_name(requirement.name) in pins, (
                f"{name} needs {requirement.name}, not locked (regenerate: {REGENERATE_LOCK})"
            )


# --------------------------------------------------------------------------- Terraform
# There is no terraform binary on the build machines: these checks are what `terraform validate`
# would find without providers (references, module inputs), done on python-hcl2's parse.

TERRAFORM = DEPLOY / "terraform"
MODULES = ("networking", "compute", "database", "cache", "messaging", "search", "storage", "security", "monitoring")
ENVIRONMENTS = ("staging", "prod")
META_ARGUMENTS = {"source", "version", "providers", "depends_on", "count", "for_each"}
PROVIDER_PREFIXES = ("aws_", "random_", "tls_", "helm_", "kubernetes_")
COMMENT = re.compile(r"(^|\s)(#|//).*$", re.M)


def unquote(label: str) -> str:
    return label.strip('"')


@functools.cache
def parsed(path: Path) -> dict:
    import hcl2

    with path.open() as handle:
        return hcl2.load(handle)


def configuration(directory: Path) -> dict:
    """Blocks of every .tf file in one directory (a module), gathered by kind."""
    gathered: dict[str, dict] = {
        "variable": {}, "output": {}, "locals": {}, "module": {}, "resource": {}, "data": {}
    }  # fmt: skip
    text = []
    for path in sorted(directory.glob("*.tf")):
        tree = parsed(path)
        text.append(COMMENT.sub(r"\1", path.read_text()))
        for kind in ("variable", "output", "module"):
            for block in tree.get(kind, []):
                for name, body in block.items():
                    gathered[kind][unquote(name)] = body
        for block in tree.get("locals", []):
            gathered["locals"].update(block)
        for kind in ("resource", "data"):
            for block in tree.get(kind, []):
                for type_name, named in block.items():
                    for name, body in named.items():
                        gathered[kind][(unquote(type_name), unquote(name))] = body
    gathered["text"] = "\n".join(text)
    return gathered


def terraform_directories() -> list[Path]:
    return sorted({path.parent for path in TERRAFORM.rglob("*.tf")})


def test_every_terraform_file_parses():
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert len(files) >= 3 * len(MODULES) + 3 * len(ENVIRONMENTS)
    for path in files:
        try:
            parsed(path)
        except Exception as error:  # the parser's own errors, whichever it raises
            pytest.fail(f"{path.relative_to(ROOT)} does not parse: {error}")


@pytest.mark.parametrize("module", MODULES)
def test_module_has_variables_outputs_and_readme(module):
    directory = TERRAFORM / "modules" / module
    for name in ("main.tf", "variables.tf", "outputs.tf", "README.md"):
        assert (directory / name).is_file(), f"modules/{module} has no {name}"
    config = configuration(directory)
    assert config["variable"] and config["output"], module
    for name, body in config["variable"].items():
        assert body.get("description") and body.get("type"), (
            f"modules/{module}: variable {name} needs description and type"
        )
    for name, body in config["output"].items():
        assert body.get("description") and "value" in body, f"modules/{module}: output {name}"


@pytest.mark.parametrize("directory", terraform_directories(), ids=lambda path: str(path.relative_to(TERRAFORM)))
def test_every_reference_in_a_terraform_directory_is_declared(directory):
    config = configuration(directory)
    text = config["text"]
    where = directory.relative_to(TERRAFORM)
    used_vars = set(re.findall(r"\bvar\.(\w+)", text))
    assert used_vars <= set(config["variable"]), f"{where}: undeclared variables {used_vars - set(config['variable'])}"
    used_locals = set(re.findall(r"\blocal\.(\w+)", text))
    assert used_locals <= set(config["locals"]), f"{where}: undeclared locals {used_locals - set(config['locals'])}"
    used_data = set(re.findall(r"(?<![\w.\"/:-])data\.(\w+)\.(\w+)", text))
    assert used_data <= set(config["data"]), f"{where}: undeclared data sources {used_data - set(config['data'])}"
    resource = re.compile(rf"(?<![\w.\"/:-])((?:{'|'.join(PROVIDER_PREFIXES)})\w+)\.(\w+)")
    used_resources = {match for match in resource.findall(text) if match[1] not in ("tftpl",)}
    assert used_resources <= set(config["resource"]), (
        f"{where}: undeclared resources {used_resources - set(config['resource'])}"
    )
    # templatefile(): the template exists and gets every variable it uses.
    for template, arguments in re.findall(r'templatefile\("\$\{path\.module\}/([^"]+)",\s*\{(.*?)\}\)', text, re.S):
        template_text = (directory / template).read_text()
        wanted = set(re.findall(r"\$\{(\w+)\}", template_text))
        given = set(re.findall(r"^\s*(\w+)\s*=", arguments, re.M))
        assert wanted <= given, f"{where}/{template} needs {wanted - given}"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_environment_calls_each_module_with_declared_inputs_and_reads_declared_outputs(environment):
    directory = TERRAFORM / "environments" / environment
    config = configuration(directory)
    calls = config["module"]
    assert set(calls) == set(MODULES), f"{environment} composes {sorted(calls)}"
    outputs = {}
    for name, call in calls.items():
        source = (directory / unquote(call["source"])).resolve()
        assert source.is_dir(), f"{environment}: module {name} source {call['source']} does not exist"
        module = configuration(source)
        inputs = {key for key in call if not key.startswith("__")} - META_ARGUMENTS
        assert inputs <= set(module["variable"]), (
            f"{environment}: {name} has no inputs {inputs - set(module['variable'])}"
        )
        required = {var for var, body in module["variable"].items() if "default" not in body}
        assert required <= inputs, f"{environment}: {name} needs {required - inputs}"
        outputs[name] = set(module["output"])
    for module, output in re.findall(r"\bmodule\.(\w+)\.(\w+)", config["text"]):
        assert module in outputs, f"{environment}: no module {module}"
        assert output in outputs[module], f"{environment}: module {module} has no output {output}"
    (terraform_block,) = parsed(directory / "main.tf")["terraform"]
    (backend,) = terraform_block["backend"]
    s3 = backend['"s3"']
    assert unquote(s3["dynamodb_table"]) and s3["encrypt"] is True and unquote(s3["key"]).startswith(environment)


def test_terraform_modules_build_the_platforms_plan():
    def module(name: str) -> dict:
        return configuration(TERRAFORM / "modules" / name)

    def default(config: dict, variable: str):
        value = config["variable"][variable]["default"]
        return unquote(value) if isinstance(value, str) else value

    networking = module("networking")
    assert default(networking, "cidr_block") == "10.0.0.0/16"
    for tier in ("public", "app", "data"):
        assert len(default(networking, f"{tier}_subnet_cidrs")) == 3
        assert ("aws_subnet", tier) in networking["resource"]
    assert ("aws_nat_gateway", "this") in networking["resource"]
    # The NetworkPolicies admit the data tier by one ipBlock: every data subnet lies inside it.
    policy = one(render("prod"), "NetworkPolicy", "pgbouncer")
    (data_block,) = {peer["ipBlock"]["cidr"] for rule in policy["spec"]["egress"] for peer in rule["to"]}
    for cidr in default(networking, "data_subnet_cidrs"):
        assert ipaddress.ip_network(unquote(cidr)).subnet_of(ipaddress.ip_network(data_block)), cidr
    assert default(module("compute"), "kubernetes_version") == "1.28"
    database = module("database")
    cluster = database["resource"][("aws_rds_cluster", "this")]
    assert unquote(cluster["engine"]) == "aurora-postgresql" and default(database, "engine_version").startswith("15.")
    assert default(database, "instance_count") == 3 and default(database, "backup_retention_days") == 35
    assert cluster["storage_encrypted"] is True and "kms_key_id" in cluster
    cache = module("cache")
    group = cache["resource"][("aws_elasticache_replication_group", "this")]
    assert default(cache, "shards") == 3 and default(cache, "replicas_per_shard") == 2
    assert group["transit_encryption_enabled"] is True and group["at_rest_encryption_enabled"] is True
    assert default(cache, "engine_version").startswith("7")
    assert default(module("messaging"), "replicas") == 3
    assert "helm_release" in {kind for kind, _ in module("messaging")["resource"]}
    assert "length(var.subnet_ids) == 3" in module("search")["variable"]["subnet_ids"]["validation"][0]["condition"]
    storage = module("storage")["text"]
    for needed in ('status = "Enabled"', '"GLACIER"', '"aws:kms"', "restrict_public_buckets = true"):
        assert needed in storage, needed
    security = module("security")
    rotations = [
        body for (kind, _), body in security["resource"].items() if kind == "aws_secretsmanager_secret_rotation"
    ]
    secrets = [name for kind, name in security["resource"] if kind == "aws_secretsmanager_secret"]
    assert len(rotations) == len(secrets) == 3
    assert all(rotation["rotation_rules"][0]["automatically_after_days"] == 30 for rotation in rotations)
    assert "enable_key_rotation     = true" in security["text"]
    acl = security["resource"][("aws_wafv2_web_acl", "this")]
    groups = {
        unquote(rule["statement"][0]["managed_rule_group_statement"][0]["name"])
        for rule in acl["rule"]
        if "managed_rule_group_statement" in rule["statement"][0]
    }
    assert groups == {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesSQLiRuleSet",
    }
    (rate,) = [
        r["statement"][0]["rate_based_statement"][0] for r in acl["rule"] if "rate_based_statement" in r["statement"][0]
    ]
    assert default(security, "rate_limit_per_5_minutes") == 2000 and rate["evaluation_window_sec"] == 300
    assert unquote(rate["aggregate_key_type"]) == "IP"


# --------------------------------------------------------------------------- checkov
# One checkov run over everything (its start-up is most of its cost): the Dockerfile, the rendered
# overlays with the ArgoCD files, and the Terraform. checkov lives in .venv-checkov (scripts/test
# makes it): its own pins clash with the project's. Skips: deploy/.checkov.yaml for those that
# hold everywhere, beside the resource for the rest, each with its reason.

CHECKOV = Path(os.environ.get("STAYBOOK_CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))
CHECKOV_FRAMEWORKS = ("dockerfile", "kubernetes", "terraform")


def json_documents(text: str) -> list:
    """checkov prints one JSON document per scanned root; read them all."""
    decoder, documents, position = json.JSONDecoder(), [], 0
    while position < len(text.rstrip()):
        while text[position].isspace():
            position += 1
        document, position = decoder.raw_decode(text, position)
        documents.extend(document if isinstance(document, list) else [document])
    return documents


def test_checkov_finds_no_failed_check(tmp_path):
    if not CHECKOV.is_file():
        message = f"checkov is not installed at {CHECKOV} (scripts/test makes .venv-checkov)"
        if os.environ.get("CI") or os.environ.get("STAYBOOK_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    scan = tmp_path / "scan"
    shutil.copytree(TERRAFORM, scan / "terraform")
    shutil.copy(DEPLOY / "Dockerfile", scan / "Dockerfile")
    for overlay in OVERLAYS:
        documents = render(overlay)
        (scan / f"overlay-{overlay}.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    for path in (DEPLOY / "argocd").glob("*.yaml"):
        shutil.copy(path, scan / f"argocd-{path.name}")
    result = subprocess.run(
        [
            str(CHECKOV), "--config-file", str(DEPLOY / ".checkov.yaml"), "--directory", str(scan),
            "--framework", *CHECKOV_FRAMEWORKS, "--output", "json", "--quiet", "--compact",
            # Offline: no guideline links or policies fetched from the vendor's service.
            "--skip-download",
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-3000:]}"
    reports = {report["check_type"]: report for report in json_documents(result.stdout)}
    assert set(CHECKOV_FRAMEWORKS) <= set(reports), f"checkov scanned {sorted(reports)}"
    failures = []
    for framework in CHECKOV_FRAMEWORKS:
        summary = reports[framework]["summary"]
        assert summary["resource_count"] > 0 and summary["parsing_errors"] == 0, (framework, summary)
        for check in reports[framework]["results"]["failed_checks"]:
            failures.append(
                f"{framework}: {check['check_id']} {check['check_name']} - {check['resource']} ({check['file_path']})"
            )
        for check in reports[framework]["results"].get("skipped_checks", []):
            reason = (check["check_result"].get("suppress_comment") or "").strip()
            assert len(reason) > 20, (
                f"{framework}: {check['check_id']} on {check['resource']} is skipped without a reason"
            )
    assert not failures, "checkov failed checks:\n" + "\n".join(failures)
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_global_checkov_skip_has_its_reason():
    lines = (DEPLOY / ".checkov.yaml").read_text().splitlines()
    config = yaml.safe_load("\n".join(lines))
    assert config["skip-check"], "no skips: then drop the file's list"
    for check in config["skip-check"]:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {check}")
        assert lines[index - 1].strip().startswith("#"), f"{check} has no reason above it"
