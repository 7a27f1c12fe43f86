"""deploy/k8s/: every manifest valid against the Kubernetes JSON schemas of the target version, strict
(an unknown or misspelt field is an error), and the project's rules on top: probes and resources on
every container, secrets by reference only, WARMBEE_* names that are real settings, selectors that
select something, topics with replication 3 and min.insync.replicas 2.

The schemas are those shipped in the kubernetes-validate wheel, so this runs offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.files import K8S, SETTING_VARIABLES, TOPICS

KUBERNETES_VERSION = "1.33"
NAMESPACE = "warmbee"
SECRET_KEYS = {
    "warmbee-secrets": {
        "pg-server",
        "pg-owner-server",
        "kafka-sasl-username",
        "kafka-sasl-password",
        "notify-secret-key",
        "notify-gateway-secret",
    },
    "warmbee-kafka-admin": {"client.properties"},
}
API_SERVICES = {"events": 8001, "points": 8002, "redemption": 8003, "pages": 8004, "notifications": 8005}
# Workers have no HTTP API: their probes ask the metrics endpoint they serve.
WORKERS = {
    "points-worker": (["worker", "points"], 8012),
    "notifications-worker": (["worker", "notifications"], 8015),
    "notifications-sender": (["worker", "notifications-sender"], 8025),
}
# Variables whose value is a secret: never written into a manifest.
SECRET_WORDS = ("SECRET", "PASSWORD", "PG_SERVER", "PG_OWNER_SERVER", "PG_ADMIN_SERVER")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


MANIFESTS = sorted(K8S.glob("*.yaml"))
RESOURCES = [(p.name, d) for p in MANIFESTS for d in documents(p)]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in RESOURCES if d["kind"] == kind}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for _, d in RESOURCES:
        if d["kind"] in ("Deployment", "Job"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]


def test_there_are_manifests_for_every_part():
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in RESOURCES}
    assert {
        ("Namespace", "warmbee"),
        ("ConfigMap", "warmbee-config"),
        ("Deployment", "events"),
        ("Deployment", "points"),
        ("Deployment", "redemption"),
        ("Deployment", "points-worker"),
        ("Deployment", "pages"),
        ("Deployment", "notifications"),
        ("Deployment", "notifications-worker"),
        ("Deployment", "notifications-sender"),
        ("Service", "events"),
        ("Service", "points"),
        ("Service", "redemption"),
        ("Service", "points-worker"),
        ("Service", "pages"),
        ("Service", "notifications"),
        ("Service", "notifications-worker"),
        ("Service", "notifications-sender"),
        ("PodDisruptionBudget", "points-worker"),
        ("PodDisruptionBudget", "notifications-worker"),
        ("HorizontalPodAutoscaler", "points-worker"),
        ("Job", "warmbee-migrate"),
        ("Job", "warmbee-kafka-topics"),
    } <= kinds


@pytest.mark.parametrize(
    "resource", [d for _, d in RESOURCES], ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in RESOURCES]
)
def test_manifest_is_valid_against_the_kubernetes_schema(resource):
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_rejects_a_misspelt_field():
    deployment = documents(K8S / "30-events.yaml")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_rejects_a_wrong_type_and_an_unknown_kind():
    pdb = documents(K8S / "60-points-worker.yaml")[2]
    pdb["spec"]["selector"] = "points-worker"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pdb, KUBERNETES_VERSION, strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate({**pdb, "kind": "PodDisruptionBudjet"}, KUBERNETES_VERSION, strict=True)


def test_everything_lives_in_the_warmbee_namespace():
    for name, d in RESOURCES:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == NAMESPACE, f"{name}: {d['kind']}/{d['metadata']['name']}"


def secret_problems(resources: list[dict[str, Any]]) -> list[str]:
    """Secrets are referenced by name and key, never written into the manifests."""
    found = [
        f"Secret/{d['metadata']['name']} holds values in the repository" for d in resources if d["kind"] == "Secret"
    ]
    for d in resources:
        if d["kind"] not in ("Deployment", "Job"):
            continue
        spec = d["spec"]["template"]["spec"]
        for container in spec["containers"]:
            for env in container.get("env", []):
                if "value" in env and any(word in env["name"].upper() for word in SECRET_WORDS):
                    found.append(f"{d['metadata']['name']}: {env['name']} is written in, not referenced")
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in SECRET_KEYS.get(ref["name"], set()):
                    found.append(f"{d['metadata']['name']}: unknown secret key {ref['name']}/{ref['key']}")
        for volume in spec.get("volumes", []):
            if "secret" in volume and volume["secret"]["secretName"] not in SECRET_KEYS:
                found.append(f"{d['metadata']['name']}: unknown secret {volume['secret']['secretName']}")
    return found


def test_secrets_are_only_referenced():
    assert secret_problems([d for _, d in RESOURCES]) == []


def test_the_secret_check_finds_a_written_in_password():
    job = documents(K8S / "20-jobs.yaml")[1]
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    env[0] = {"name": "WARMBEE_PG_SERVER", "value": "postgresql://warmbee:hunter2@db:5432"}
    secret = {"kind": "Secret", "metadata": {"name": "warmbee-secrets"}, "stringData": {"pg-server": "x"}}
    assert secret_problems([job, secret]) == [
        "Secret/warmbee-secrets holds values in the repository",
        "warmbee-migrate: WARMBEE_PG_SERVER is written in, not referenced",
    ]


def test_configuration_names_only_real_settings():
    config = by_kind("ConfigMap")["warmbee-config"]["data"]
    assert set(config) <= SETTING_VARIABLES, set(config) - SETTING_VARIABLES
    for where, spec in pod_specs():
        for container in spec["containers"]:
            names = {e["name"] for e in container.get("env", []) if e["name"].startswith("WARMBEE_")}
            assert names <= SETTING_VARIABLES, f"{where}: {names - SETTING_VARIABLES}"


def test_production_settings_for_apache_kafka():
    config = by_kind("ConfigMap")["warmbee-config"]["data"]
    assert config["WARMBEE_ENV"] == "production"
    assert config["WARMBEE_KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    assert config["WARMBEE_KAFKA_SECURITY_PROTOCOL"] in ("SASL_SSL", "SASL_PLAINTEXT", "SSL")
    assert config["WARMBEE_HOST"] == "0.0.0.0"  # noqa: S104 - in a pod, listen on the pod address


@pytest.mark.parametrize("name", [*API_SERVICES, *WORKERS])
def test_every_deployment_has_probes_resources_and_runs_unprivileged(name):
    spec = by_kind("Deployment")[name]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert not container["image"].endswith(":latest")
    ready, alive = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    if name in WORKERS:  # no HTTP API: the metrics endpoint it serves
        args, port = WORKERS[name]
        assert (ready["path"], alive["path"]) == ("/metrics", "/metrics")
        assert container["ports"] == [{"name": "metrics", "containerPort": port}]
        assert container["args"] == args
    else:
        assert (ready["path"], alive["path"]) == ("/readyz", "/healthz")
        assert container["ports"] == [{"name": "http", "containerPort": API_SERVICES[name]}]
        assert container["args"] == ["serve", name]
    assert {ready["port"], alive["port"]} == {container["ports"][0]["name"]}
    # Prometheus finds every pod by its annotations, on the port the container serves its metrics on.
    annotations = by_kind("Deployment")[name]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(container["ports"][0]["containerPort"]),
        "prometheus.io/path": "/metrics",
    }


def test_services_select_pods_and_name_their_ports():
    deployments = by_kind("Deployment")
    for name, service in by_kind("Service").items():
        pod = deployments[name]["spec"]["template"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        port_names = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_the_worker_has_a_disruption_budget_and_an_autoscaler_on_its_deployment():
    worker = by_kind("Deployment")["points-worker"]
    labels = worker["spec"]["template"]["metadata"]["labels"]
    pdb = by_kind("PodDisruptionBudget")["points-worker"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] == 1
    hpa = by_kind("HorizontalPodAutoscaler")["points-worker"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "points-worker"}
    partitions = int(by_kind("ConfigMap")["warmbee-topics"]["data"]["PARTITIONS"])
    assert worker["spec"]["replicas"] == hpa["minReplicas"] >= 2
    assert hpa["maxReplicas"] <= partitions, "workers beyond the partition count sit idle"


def test_the_topic_job_creates_the_topics_with_replication_three_and_two_in_sync():
    topics = by_kind("ConfigMap")["warmbee-topics"]["data"]
    assert set(topics["TOPICS"].split()) == TOPICS
    assert topics["REPLICATION_FACTOR"] == "3"
    assert topics["MIN_INSYNC_REPLICAS"] == "2"
    job = by_kind("Job")["warmbee-kafka-topics"]["spec"]["template"]["spec"]
    (container,) = job["containers"]
    assert container["image"].startswith("apache/kafka:")
    script = container["args"][0]
    assert '--replication-factor "$REPLICATION_FACTOR"' in script
    assert 'min.insync.replicas="$MIN_INSYNC_REPLICAS"' in script
    assert "--if-not-exists" in script
    assert container["envFrom"] == [{"configMapRef": {"name": "warmbee-topics"}}]


def test_the_migration_job_runs_warmbee_migrate_from_the_same_image():
    job = by_kind("Job")["warmbee-migrate"]["spec"]["template"]["spec"]
    (container,) = job["containers"]
    images = {d["spec"]["template"]["spec"]["containers"][0]["image"] for d in by_kind("Deployment").values()}
    assert images == {container["image"]}
    assert container["args"] == ["migrate"]
    assert job["restartPolicy"] == "OnFailure"


def database_credentials(spec: dict[str, Any]) -> dict[str, str]:
    """The database settings a pod gets, each as the secret key it comes from."""
    (container,) = spec["containers"]
    return {
        e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}).get("key", "(written in)")
        for e in container.get("env", [])
        if e["name"].startswith("WARMBEE_PG_") and e["name"].endswith("_SERVER")
    }


def test_the_migration_runs_as_the_owner_and_the_services_as_the_application_role():
    """Two credentials: only the migrate Job can alter tables; the services can only read and append the
    ledger (migrations/0009.privileges.sql). No pod has an admin credential."""
    job = by_kind("Job")["warmbee-migrate"]["spec"]["template"]["spec"]
    assert database_credentials(job) == {"WARMBEE_PG_OWNER_SERVER": "pg-owner-server"}
    deployments = by_kind("Deployment")
    assert set(deployments) == {*API_SERVICES, *WORKERS}
    # The pages service has no database: no credential at all.
    assert database_credentials(deployments.pop("pages")["spec"]["template"]["spec"]) == {}
    for name, deployment in deployments.items():
        assert database_credentials(deployment["spec"]["template"]["spec"]) == {"WARMBEE_PG_SERVER": "pg-server"}, name


def secret_keys(spec: dict[str, Any]) -> dict[str, str]:
    """The variables a pod gets from warmbee-secrets, each as the key it comes from."""
    (container,) = spec["containers"]
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in container.get("env", [])
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "warmbee-secrets"
    }


def test_the_notifications_api_and_worker_share_the_sealing_key_and_only_the_worker_reads_kafka():
    deployments = by_kind("Deployment")
    api = secret_keys(deployments["notifications"]["spec"]["template"]["spec"])
    worker = secret_keys(deployments["notifications-worker"]["spec"]["template"]["spec"])
    assert api["WARMBEE_NOTIFY_SECRET_KEY"] == worker["WARMBEE_NOTIFY_SECRET_KEY"] == "notify-secret-key"
    assert not any(name.startswith("WARMBEE_KAFKA_") for name in api)
    assert {"WARMBEE_KAFKA_SASL_USERNAME", "WARMBEE_KAFKA_SASL_PASSWORD"} <= set(worker)
    # The webhook senders unseal the secrets too, and read no Kafka; the worker leaves the webhooks to them.
    sender = deployments["notifications-sender"]["spec"]["template"]["spec"]
    assert secret_keys(sender)["WARMBEE_NOTIFY_SECRET_KEY"] == "notify-secret-key"
    assert not any(name.startswith("WARMBEE_KAFKA_") for name in secret_keys(sender))
    worker_env = {
        e["name"]: e.get("value")
        for e in deployments["notifications-worker"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert worker_env["WARMBEE_NOTIFICATIONS_WORKER_SENDS_WEBHOOKS"] == "false"
    # No other pod can read webhook secrets.
    for name, deployment in deployments.items():
        if not name.startswith("notifications"):
            assert "WARMBEE_NOTIFY_SECRET_KEY" not in secret_keys(deployment["spec"]["template"]["spec"]), name
    # The key is documented where the secrets are.
    assert "notify-secret-key" in (K8S / "10-config.yaml").read_text()


def test_the_notifications_worker_keeps_faust_data_on_the_writable_volume():
    """faust makes a data directory at start, by default in the working directory (the image's /app, read-only
    to the service user, on a read-only root filesystem): FAUST_DATADIR puts it under the /tmp emptyDir."""
    worker = by_kind("Deployment")["notifications-worker"]
    spec = worker["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    tmp = "/tmp"  # noqa: S108 - the pod's own emptyDir, not a shared temporary directory
    assert env["FAUST_DATADIR"].startswith(f"{tmp}/")
    assert {"name": mounts[tmp], "emptyDir": {}} in spec["volumes"]
    assert worker["spec"]["replicas"] == 2
    pdb = by_kind("PodDisruptionBudget")["notifications-worker"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()
    partitions = int(by_kind("ConfigMap")["warmbee-topics"]["data"]["PARTITIONS"])
    assert worker["spec"]["replicas"] <= partitions
