"""deploy/helm/stalwart: rendered (tests/unit/deploy/_helm.py, or `helm` when on PATH), the
objects schema-checked with kubernetes-validate, the alert rules with promtool, the
dashboard's queries against the metrics the node really exports."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import tempfile
from typing import Any

import pytest
import yaml
from tests.unit.deploy._helm import TemplateError, render_chart, render_objects

import stalwart

ROOT = pathlib.Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "stalwart"
K8S = "1.30.0"
SECRET = {"existingSecret": "stalwart-secrets"}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # the Prometheus Operator's, not in the schema


def objects(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    rendered = render_objects(CHART, {**SECRET, **(values or {})})
    by_kind: dict[str, dict[str, Any]] = {}
    for obj in rendered:
        assert obj["kind"] not in by_kind, f"two {obj['kind']} objects"
        by_kind[obj["kind"]] = obj
    return by_kind


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (c,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


def test_the_default_release_makes_every_object():
    objs = objects()
    assert set(objs) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    }
    assert "Secret" not in objs  # secrets are referenced, never created


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "replicaCount": 3,
            "secretKeys": {"storeUrl": "store-url"},
            "persistence": {"enabled": False},
        },
        {
            "secretKeys": {"alertWebhookUrl": "hook"},
            "extraEnv": [{"name": "X", "value": "1"}],
            "nodeSelector": {"disk": "ssd"},
            "persistence": {"storageClass": "fast"},
            # Helm prints a number from values as a float64 (1e+06) unless `int` converts it
            "terminationGracePeriodSeconds": 1000000,
            "probes": {"startup": {"failureThreshold": 1000000}},
        },
    ],
    ids=["default", "postgres-3-nodes", "options"],
)
def test_every_object_passes_the_kubernetes_schema_strictly(values):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for obj in objects(values).values():
        if obj["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(obj, K8S, strict=True)


def test_the_node_has_its_probes_on_the_servers_paths():
    from stalwart.server._settings import PUBLIC_PATHS  # the paths served without a token

    c = container(objects())
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8470}
    paths = {
        k: c[k]["httpGet"]["path"] for k in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": "/livez",
        "livenessProbe": "/livez",
        "readinessProbe": "/readyz",
    }
    assert set(paths.values()) <= set(PUBLIC_PATHS)
    for k in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[k]["httpGet"]["port"] == "http"
        assert c[k]["timeoutSeconds"] >= 3  # each readiness check has its own 3 s deadline
    assert c["args"][:2] == ["run", "stalwart.demo.app:app"]
    assert c["args"][c["args"].index("--http-host") + 1] == "0.0.0.0"
    assert c["image"] == f"stalwart:{stalwart.__version__}"


def test_secrets_come_by_reference_only():
    c = container(objects({"secretKeys": {"storeUrl": "store-url", "alertWebhookUrl": "hook"}}))
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert refs == {
        "STALWART_API_TOKEN": {"name": "stalwart-secrets", "key": "api-token"},
        "STALWART_STORE_URL": {"name": "stalwart-secrets", "key": "store-url"},
        "STALWART_ALERT_WEBHOOK_URL": {"name": "stalwart-secrets", "key": "hook"},
    }
    # without a Secret to read the token from, the chart refuses to render (a node on
    # 0.0.0.0 with no token would refuse to start)
    with pytest.raises(TemplateError, match="existingSecret"):
        render_chart(CHART, {})


def test_sqlite_is_one_writer_and_postgresql_rolls():
    sqlite = objects()
    assert sqlite["Deployment"]["spec"]["strategy"]["type"] == "Recreate"
    volume = sqlite["Deployment"]["spec"]["template"]["spec"]["volumes"][0]
    assert (
        volume["persistentVolumeClaim"]["claimName"]
        == sqlite["PersistentVolumeClaim"]["metadata"]["name"]
    )
    env = {e["name"]: e.get("value") for e in container(sqlite)["env"]}
    assert env["STALWART_STORE_URL"] == "sqlite:////data/stalwart.db"
    pg = objects(
        {
            "replicaCount": 3,
            "secretKeys": {"storeUrl": "store-url"},
            "persistence": {"enabled": False},
        }
    )
    assert pg["Deployment"]["spec"]["replicas"] == 3
    assert pg["Deployment"]["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "PersistentVolumeClaim" not in pg
    assert pg["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_service_pdb_and_servicemonitor_select_the_pods():
    objs = objects({"metrics": {"serviceMonitor": {"labels": {"release": "prom"}}}})
    pod_labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert objs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert objs["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert (
        objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    )
    monitor = objs["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= objs["Service"]["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in objs["Service"]["spec"]["ports"]}


def test_monitoring_objects_can_be_left_out():
    objs = objects(
        {
            "metrics": {
                "serviceMonitor": {"enabled": False},
                "prometheusRule": {"enabled": False},
                "grafanaDashboard": {"enabled": False},
            },
            "podDisruptionBudget": {"enabled": False},
        }
    )
    assert set(objs) == {"Deployment", "Service", "PersistentVolumeClaim"}


def test_the_rules_file_is_what_stalwart_alerts_export_writes():
    from stalwart.observe import default_rules, prometheus_rules

    assert (CHART / "files" / "prometheus-rules.yaml").read_text() == prometheus_rules(
        default_rules()
    ), "regenerate: stalwart alerts export -o deploy/helm/stalwart/files/prometheus-rules.yaml"


def test_the_prometheus_rule_passes_promtool(tmp_path):
    rule = objects()["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "RestartStorm" in alerts and len(alerts) >= 10
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts)} rules found" in proc.stdout
    # and promtool does reject a broken one, so the pass above means something
    rule["spec"]["groups"][0]["rules"][0]["expr"] = "sum(rate(stalwart_x[5m]"
    path.write_text(yaml.safe_dump(rule["spec"]))
    bad = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, timeout=60, check=False
    )
    assert bad.returncode != 0


def exported_names() -> set[str]:
    """Every sample name the node's registry can export (histograms' _bucket/_sum/_count…)."""
    import stalwart.node
    import stalwart.server  # noqa: F401
    from stalwart.observe._metrics import REGISTRY

    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_sum", "_count"],
        "gauge": [""],
        "info": ["_info"],
        "summary": ["_sum", "_count"],
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= {family.name + s for s in suffixes.get(family.type, [""])}
    return names


def test_the_dashboard_queries_metrics_the_node_exports():
    dashboard = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    known = exported_names()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    used = {m for e in exprs for m in re.findall(r"\bstalwart_[a-z_]+", e)}
    assert used and used <= known, f"not exported: {sorted(used - known)}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    cm = objects()["ConfigMap"]
    assert json.loads(cm["data"]["stalwart.json"]) == dashboard
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_chart_version_and_values_are_documented():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == stalwart.__version__
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Za-z]\w*:", line):  # every top-level key has a comment above it
            assert lines[i - 1].startswith("#"), f"values.yaml: {line!r} is not described"


def test_stalwart_init_values_render_with_the_chart(tmp_path):
    """The values file `stalwart init` writes is one this chart takes."""
    from stalwart.cli._init import init_project

    project = tmp_path / "demoapp"
    init_project(project)
    values = yaml.safe_load((project / "deploy" / "values.yaml").read_text())
    objs = {o["kind"]: o for o in render_objects(CHART, values)}
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(objs["Deployment"], K8S, strict=True)
    assert container(objs)["args"][:2] == ["run", "app:app"]
    assert container(objs)["image"] == "demoapp:latest"


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicas": 3}, "'replicas' was unexpected"),  # the key is replicaCount
        ({"secretKeys": {"apiToken": ""}}, "secretKeys.apiToken"),
        ({"probes": {"readiness": {"path": "readyz"}}}, "probes.readiness"),
        ({"store": {"url": "mysql://db/x"}}, "store.url"),
    ],
)
def test_values_are_checked_against_the_charts_schema(values, where):
    with pytest.raises(TemplateError, match=re.escape(where)):
        render_chart(CHART, {**SECRET, **values})


def test_the_renderer_refuses_what_it_does_not_know(tmp_path):
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("a: {b: 1}\n")
    (chart / "templates" / "x.yaml").write_text("v: {{ .Values.a.b }}\n")
    assert render_chart(chart) == {"c/templates/x.yaml": "v: 1\n"}
    for bad in [
        '{{ lookup "v1" }}',
        "{{ $x := 1 }}",
        "{{ .Values.missing.b }}",
        "{{ .Values.a }}",
        "{{ if .Values.a }}",
    ]:
        (chart / "templates" / "x.yaml").write_text(bad)
        with pytest.raises(TemplateError):
            render_chart(chart)


def real_helm(chart: pathlib.Path, values: dict[str, Any]) -> dict[str, str]:
    """The chart rendered by Helm itself: its Go SDK through helm_python (the
    helm-python-sdk package, in the test extra where it has a wheel), else a ``helm``
    binary on PATH; skipped when neither is here. Errors raise ``TemplateError``."""
    try:
        import helm_python
    except ImportError:
        helm_python = None
    if helm_python is not None:
        try:
            with helm_python.Chart.load(str(chart)) as helm_chart:
                out = helm_chart.render(values, name="stalwart", namespace="default")
        except helm_python.HelmError as exc:
            raise TemplateError(str(exc)) from None
        return {k: v for k, v in out.items() if k.endswith((".yaml", ".yml"))}
    if shutil.which("helm") is None:
        pytest.skip(
            "no real Helm here: helm-python-sdk (Helm's Go SDK; the test extra installs it "
            "on x86-64 Linux) is not installed and no helm binary is on PATH"
        )
    with tempfile.TemporaryDirectory() as scratch:  # never beside the chart
        given = pathlib.Path(scratch) / "values.json"
        given.write_text(json.dumps(values))
        proc = subprocess.run(
            ["helm", "template", "stalwart", str(chart), "-f", str(given)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise TemplateError(proc.stderr)
    docs: dict[str, str] = {}
    for part in proc.stdout.split("---\n# Source: ")[1:]:
        name, _, body = part.partition("\n")
        docs[name] = body
    return docs


def loaded(rendered: dict[str, str]) -> list[dict[str, Any]]:
    objs = [d for text_ in rendered.values() for d in yaml.safe_load_all(text_) if d]
    return sorted(objs, key=lambda o: (o["kind"], o["metadata"]["name"]))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "values",
    [
        {},
        {"replicaCount": 3, "secretKeys": {"storeUrl": "store-url"},
         "persistence": {"enabled": False}},
        {"secretKeys": {"alertWebhookUrl": "hook"}, "extraEnv": [{"name": "X", "value": "1"}],
         "nodeSelector": {"disk": "ssd"}, "persistence": {"storageClass": "fast"},
         "terminationGracePeriodSeconds": 1000000, "service": {"type": "NodePort"},
         "probes": {"startup": {"failureThreshold": 1000000}}},
        {"metrics": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False},
                     "grafanaDashboard": {"enabled": False}},
         "podDisruptionBudget": {"enabled": False}},
        "init",
    ],
    ids=["default", "postgres-3-nodes", "options", "no-monitoring", "init-values"],
)  # fmt: skip
def test_helm_renders_the_same_objects(values, tmp_path):
    """Real Helm and the Python renderer agree object for object on the chart, for each
    set of values the other tests use and the values `stalwart init` writes."""
    if values == "init":
        from stalwart.cli._init import init_project

        init_project(tmp_path / "demoapp")
        values = yaml.safe_load((tmp_path / "demoapp" / "deploy" / "values.yaml").read_text())
    else:
        values = {**SECRET, **values}
    theirs = loaded(real_helm(CHART, values))
    assert theirs == loaded(render_chart(CHART, values))
    assert {o["kind"] for o in theirs} >= {"Deployment", "Service"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({}, "existingSecret: name the Secret"),  # required
        ({**SECRET, "replicas": 3}, "replicas"),  # the schema: the key is replicaCount
        ({**SECRET, "http": {"port": 70000}}, "port"),
    ],
)
def test_helm_refuses_what_the_renderer_refuses(values, words):
    for render in (real_helm, render_chart):
        with pytest.raises(TemplateError, match=words):
            render(CHART, values)


NUMBERS_TEMPLATE = """\
a: {{ .Values.a }}
b: {{ .Values.b }}
c: {{ .Values.c }}
f: {{ .Values.f }}
small: {{ .Values.small }}
q: {{ .Values.a | quote }}
y: {{ toYaml .Values.a }}
j: {{ toJson .Values.m }}
i: {{ int .Values.b }}
p: {{ printf "%s-%d" .Values.s (int .Values.c) }}
e: {{ eq (int .Values.c) 65536 }}
t: {{ if .Values.zero }}yes{{ else }}no{{ end }}
"""


@pytest.mark.timeout(120)
def test_the_renderer_follows_helms_number_semantics(tmp_path):
    """A number from values is a float64 in Helm: 1e+06 when printed, an integer again
    through toYaml/toJson, an error when compared with an integer literal. The expected
    text is what Helm 4.2's Go SDK renders (checked against it below when present)."""
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text(
        "a: 1000000\nb: 1234567\nc: 65536\nf: 1.5\nsmall: 0.00001\nzero: 0\ns: x\n"
        "m: {k: 3000000, l: [1, 2.5]}\n"
    )
    (chart / "templates" / "x.yaml").write_text(NUMBERS_TEMPLATE)
    expected = (
        'a: 1e+06\nb: 1.234567e+06\nc: 65536\nf: 1.5\nsmall: 1e-05\nq: "1e+06"\n'
        'y: 1000000\nj: {"k":3000000,"l":[1,2.5]}\ni: 1234567\np: x-65536\ne: true\nt: no\n'
    )
    assert render_chart(chart) == {"c/templates/x.yaml": expected}
    bad = {
        "{{ gt .Values.c 1 }}": "incompatible types for comparison",
        "{{ eq .Values.c 65536 }}": "incompatible types for comparison",
        '{{ printf "%d" .Values.c }}': "float64",
    }
    for template, words in bad.items():
        (chart / "templates" / "x.yaml").write_text(template)
        with pytest.raises(TemplateError, match=words):
            render_chart(chart)
    try:
        import helm_python  # noqa: F401
    except ImportError:
        if shutil.which("helm") is None:
            return  # the expected text above is Helm's own (recorded with helm-python-sdk)
    for template, words in bad.items():
        (chart / "templates" / "x.yaml").write_text(template)
        if "printf" in template:  # Go prints %!d(float64=65536) rather than failing
            assert "%!d(float64=65536)" in real_helm(chart, {})["c/templates/x.yaml"]
        else:
            with pytest.raises(TemplateError, match=words):
                real_helm(chart, {})
    (chart / "templates" / "x.yaml").write_text(NUMBERS_TEMPLATE)
    assert real_helm(chart, {}) == {"c/templates/x.yaml": expected}
