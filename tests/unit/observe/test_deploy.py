"""deploy/: the Kubernetes manifests and the systemd unit, checked strictly for structure."""

from __future__ import annotations

import configparser
import pathlib

import pytest
import yaml

DEPLOY = pathlib.Path(__file__).resolve().parents[3] / "deploy"


def load(name: str) -> dict:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()))
    assert len(docs) == 1
    return docs[0]


def test_kustomization_lists_every_manifest():
    k = load("kustomization.yaml")
    assert sorted(k["resources"]) == ["deployment.yaml", "pvc.yaml", "service.yaml"]
    for name in k["resources"]:
        doc = load(name)
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]


def test_deployment_wires_probes_resources_and_storage():
    d = load("deployment.yaml")
    assert (d["apiVersion"], d["kind"]) == ("apps/v1", "Deployment")
    spec = d["spec"]["template"]["spec"]
    assert (
        d["spec"]["selector"]["matchLabels"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
    )
    (c,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8470}
    probes = {k: c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["startupProbe"]["httpGet"]["path"] == "/livez"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["httpGet"]["port"] in ("http", 8470)
        assert probe["timeoutSeconds"] >= 3  # the checks' own deadline is 3 s
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    claim = spec["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == load("pvc.yaml")["metadata"]["name"]
    assert c["volumeMounts"][0]["name"] == spec["volumes"][0]["name"]
    secret_refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in c["env"] if "valueFrom" in e}
    assert {"api-token", "store-url"} <= secret_refs
    secret = yaml.safe_load((DEPLOY / "kubernetes" / "secret.example.yaml").read_text())
    assert secret_refs <= set(secret["stringData"])
    assert "--http-host" in c["args"]  # not loopback inside a pod
    store = c["args"][c["args"].index("--store") + 1]
    assert store == "$(STALWART_STORE_URL)"  # expanded by Kubernetes from the Secret
    assert any(e["name"] == "STALWART_STORE_URL" for e in c["env"])


def test_service_targets_the_pods():
    s = load("service.yaml")
    d = load("deployment.yaml")
    assert s["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    assert s["spec"]["ports"][0]["targetPort"] == "http"


def test_systemd_unit_has_watchdog_and_mixed_kill():
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / "stalwart.service").read_text())
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["KillMode"] == "mixed"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] in ("on-failure", "always")
    assert "stalwart run" in service["ExecStart"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


MANIFESTS = ["deployment.yaml", "pvc.yaml", "service.yaml", "secret.example.yaml"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifests_pass_the_kubernetes_schema_strictly(name):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(load_any(name), "1.30.0", strict=True)


def test_the_schema_check_catches_a_misspelled_probe():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    d = load("deployment.yaml")
    c = d["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(d, "1.30.0", strict=True)


def load_any(name: str) -> dict:
    return yaml.safe_load((DEPLOY / "kubernetes" / name).read_text())


def load_cluster(name: str) -> dict:
    return yaml.safe_load((DEPLOY / "kubernetes" / "cluster" / name).read_text())


def test_the_cluster_deployment_scales_out_safely():
    d = load_cluster("deployment.yaml")
    assert d["spec"]["replicas"] >= 3
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    spec = d["spec"]["template"]["spec"]
    assert "volumes" not in spec  # the store is PostgreSQL, shared by every pod
    (c,) = spec["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert 10 <= spec["terminationGracePeriodSeconds"] <= 60  # time to drain
    refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in c["env"] if "valueFrom" in e}
    assert "store-url" in refs
    pdb = load_cluster("pdb.yaml")
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    k = load_cluster("kustomization.yaml")
    assert sorted(k["resources"]) == ["../service.yaml", "deployment.yaml", "pdb.yaml"]


@pytest.mark.parametrize("name", ["deployment.yaml", "pdb.yaml"])
def test_cluster_manifests_pass_the_kubernetes_schema_strictly(name):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(load_cluster(name), "1.30.0", strict=True)
