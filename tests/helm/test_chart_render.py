"""helm/gemhub rendered offline for a matrix of values (default, HAMi, Volcano, Kueue on,
external PostgreSQL, OAuth): every object valid Kubernetes 1.32 (strict), custom resources
against the published CRDs, `helm lint` clean, no secret in a ConfigMap or on a command
line, bad values refused with the key named, the hub's GemHub configuration accepted by
gemhub.hub_config.chart, NetworkPolicies that keep user pods out, least-privilege RBAC."""

from __future__ import annotations

import copy
import functools
import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chartkit  # noqa: E402
from chartkit import admits, find, secret_data, selects  # noqa: E402

KUBE_VERSION = "1.32.0"
SERVICES = ("quota", "data", "ssh")
DSNS = {n: f"postgresql://gemhub_{n}:dsn-pass-{n}-4417@db.example.com:5432/gemhub_{n}" for n in SERVICES}
OAUTH_SECRET = "oauth-client-secret-value-5512"
CASES = {
    "default": {},
    "hami": {"accelerators": {"profile": "hami"}},
    "volcano": {"accelerators": {"profile": "volcano"}},
    "kueue": {
        "kueue": {"enabled": True},
        "jobKinds": {k: True for k in ("trainJob", "pytorchJob", "tfJob", "mpiJob", "volcanoJob", "batchJob")},
        "services": {"jobs": {"enabled": True}, "images": {"enabled": True}, "billing": {"enabled": True},
                     "quota": {"autoscaling": {"enabled": True}}, "ssh": {"replicas": 2}},
        "jupyterhub": {"hub": {"services": {"jobs": {}, "images": {}, "billing": {}}}},
    },
    "external-postgresql": {
        "database": {"type": "external", "external": {"urls": DSNS}},
        "services": {"ssh": {"gateway": {"type": "NodePort", "nodePort": 30022}, "publicHost": "ssh.example.com"}},
    },
    "oauth": {
        "platform": {"publicUrl": "https://gemhub.example.com/gemhub/", "auth": {
            "type": "generic", "oauthClientSecret": OAUTH_SECRET, "oauth": {
                "client_id": "gemhub", "callback_url": "https://gemhub.example.com/gemhub/hub/oauth_callback",
                "authorize_url": "https://sso.example.com/auth", "token_url": "https://sso.example.com/token",
                "userdata_url": "https://sso.example.com/userinfo", "allow_all": True}}},
        "jupyterhub": {"hub": {"baseUrl": "/gemhub/"}},
    },
}
# Labels of a user's pod as KubeGemSpawner under z2jh makes them (tests/helm/test_chart_hub.py
# checks the same against a real spawn).
USER_POD = {"app": "jupyterhub", "app.kubernetes.io/name": "jupyterhub", "release": "gemhub",
            "app.kubernetes.io/instance": "gemhub", "component": "singleuser-server",
            "app.kubernetes.io/component": "singleuser-server", "hub.jupyter.org/network-access-hub": "true",
            "hub.jupyter.org/servername": "", "hub.jupyter.org/username": "alice",
            "gemhub.io/workspace-id": "1", "gemhub.io/project-id": "1"}


@functools.lru_cache(maxsize=None)
def rendered(case: str) -> tuple:
    return tuple(chartkit.render(copy.deepcopy(CASES[case])))


def objects(case: str) -> list[dict]:
    return [copy.deepcopy(o) for o in rendered(case)]


def gemhub_objects(case: str) -> list[dict]:
    return [o for o in objects(case) if o["__source__"].startswith("gemhub/templates/")]


# -- validity ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> (openAPIV3Schema, scope, plural) of every shared CRD."""
    out = {}
    crds = chartkit.crds_dir()
    for path in sorted(crds.glob("*.yaml")) if crds else ():
        # C loader: the CRDs are 5 MB of YAML
        for crd in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for v in spec["versions"]:
                out[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = {
                    "schema": v["schema"]["openAPIV3Schema"], "scope": spec["scope"],
                    "plural": spec["names"]["plural"], "group": spec["group"]}
    return out


@pytest.fixture(scope="module")
def validate():
    """kubernetes-validate (strict) with its schema files read once, not per object."""
    import kubernetes_validate
    import kubernetes_validate.utils as kvu

    kvu.schema_contents = functools.lru_cache(maxsize=None)(kvu.schema_contents)
    seen: set[str] = set()

    def check(obj: dict) -> None:
        body = chartkit.clean(obj)
        key = json.dumps(body, sort_keys=True)
        if key in seen:  # z2jh's objects repeat across cases
            return
        crd = _crd_schemas().get((body["apiVersion"], body["kind"]))
        if crd is not None:
            import jsonschema

            jsonschema.validate(body, crd["schema"])
        else:
            kubernetes_validate.validate(body, KUBE_VERSION, strict=True)
        seen.add(key)

    return check


@pytest.mark.parametrize("case", list(CASES))
def test_every_rendered_object_is_valid_kubernetes_1_32(case, validate):
    objs = objects(case)
    assert {"Deployment", "Service", "NetworkPolicy", "Secret", "ConfigMap"} <= {o["kind"] for o in objs}
    for obj in objs:
        try:
            validate(obj)
        except Exception as e:  # the object's name in the failure, not only the schema path
            pytest.fail(f"{case}: {obj['kind']}/{obj['metadata']['name']} from {obj['__source__']}: {e}")


def test_helm_lint_is_clean():
    import helm_python as helm

    chart = chartkit.prepare_chart()
    for case in ("default", "oauth", "kueue"):
        report = helm.lint(str(chart), copy.deepcopy(CASES[case]), strict=True, kube_version=f"v{KUBE_VERSION}",
                           namespace=chartkit.NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, f"{case}: {problems}"


# -- secrets -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_no_secret_value_in_a_configmap_or_on_a_command_line(case):
    objs = objects(case)
    secrets = set()
    for s in (o for o in objs if o["kind"] == "Secret"):
        secrets |= {v for v in secret_data(s).values() if len(v) >= 8 and "\n" not in v.strip()}
    secrets |= set(DSNS.values()) | {OAUTH_SECRET}
    assert secrets
    configmaps = [json.dumps(o.get("data") or {}) for o in objs if o["kind"] == "ConfigMap"]
    plain = []  # what ends up in `ps` or `kubectl describe`: argv and literal env values
    for o in objs:
        spec = o.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            plain += c.get("command", []) + c.get("args", []) + [e.get("value", "") for e in c.get("env", [])]
    for value in secrets:
        assert not any(value in cm for cm in configmaps), f"{case}: a Secret's value is in a ConfigMap"
        assert not any(value in str(p) for p in plain), f"{case}: a Secret's value is on a command line or in env"
    config = yaml.safe_load(find(objs, "ConfigMap", "gemhub-hub-config")["data"]["gemhub.yaml"])
    assert "oauthClientSecret" not in config["auth"] and "client_secret" not in config["auth"]["oauth"]


# -- the values schema and the chart's own checks --------------------------------------------
@pytest.mark.parametrize("values, named", [
    ({"services": {"quota": {"replcas": 2}}}, "replcas"),
    ({"accelerators": {"profile": "hamy"}}, "/accelerators/profile"),
    ({"storage": {"workspaces": {"size": "lots"}}}, "/storage/workspaces/size"),
    ({"database": {"type": "mysql"}}, "/database/type"),
    ({"services": {"data": {"replicas": 3}}}, "/services/data/replicas"),
    ({"services": {"ssh": {"gateway": {"type": "Ingress"}}}}, "/services/ssh/gateway/type"),
    ({"platform": {"presets": []}}, "/platform/presets"),
    ({"kueue": {"enabled": "yes"}}, "/kueue/enabled"),
    ({"platfrom": {}}, "platfrom"),
])
def test_a_bad_value_is_refused_with_its_key_named(values, named):
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError) as e:
        chartkit.render(values)
    assert named in str(e.value)


@pytest.mark.parametrize("values, named", [
    ({"accelerators": {"profile": "volcano"}, "jupyterhub": {"scheduling": {"userScheduler": {"enabled": True}}}},
     "jupyterhub.scheduling.userScheduler.enabled"),
    ({"database": {"type": "external", "external": {"urls": {"quota": DSNS["quota"]}}}}, "database.external.urls.data"),
    ({"services": {"jobs": {"enabled": True}}}, "jupyterhub.hub.services.jobs"),
    ({"platform": {"defaultPreset": "XL"}}, "platform.defaultPreset"),
    ({"platform": {"auth": {"type": "github", "oauth": {"client_id": "x"}}}}, "platform.auth.oauthClientSecret"),
])
def test_values_that_would_not_work_are_refused_with_the_keys_named(values, named):
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError) as e:
        chartkit.render(values)
    assert named in str(e.value)


def test_values_presets_are_gemhubs_defaults():
    from gemhub.hub_config.configurer import DEFAULTS

    values = yaml.safe_load((chartkit.CHART / "values.yaml").read_text())
    assert values["platform"]["presets"] == DEFAULTS["presets"]


# -- the hub's GemHub configuration ------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_the_hub_accepts_the_rendered_gemhub_configuration(case, tmp_path):
    from gemhub.hub_config import chart

    objs = objects(case)
    cm = find(objs, "ConfigMap", "gemhub-hub-config")
    for name, text in cm["data"].items():
        (tmp_path / name).write_text(text)
    hub_secret = secret_data(find(objs, "Secret", "hub"))
    gemhub_hub = secret_data(find(objs, "Secret", "gemhub-hub"))
    env = {"GEMHUB_ADMIN_PASSWORD": gemhub_hub["admin-password"]}
    if "oauth-client-secret" in gemhub_hub:
        env["GEMHUB_OAUTH_CLIENT_SECRET"] = gemhub_hub["oauth-client-secret"]
    cfg = chart.read_platform(tmp_path, env)
    urls = chart.read_services(tmp_path)
    tokens = {n: hub_secret[f"hub.services.{n}.apiToken"] for n in urls}
    out = chart.build_config(cfg, chart.ChartInputs(urls, tokens, admin_password=env["GEMHUB_ADMIN_PASSWORD"]))

    values = CASES[case]
    spawner = out["KubeGemSpawner"]
    assert spawner["accelerator_profile"] == values.get("accelerators", {}).get("profile", "native")
    assert (spawner["storage_claim"], spawner["datasets_claim"]) == ("gemhub-workspaces", "gemhub-datasets")
    base = values.get("jupyterhub", {}).get("hub", {}).get("baseUrl", "/")
    assert spawner["quota_url"] == f"http://gemhub-quota:8181{base}services/quota/"
    assert spawner["quota_token"] == tokens["quota"] and spawner["data_token"] == tokens["data"]
    assert out["JupyterHub"]["spawner_class"] == "gemhub.spawner.kube.spawner.KubeGemSpawner"
    if case == "oauth":
        assert out["JupyterHub"]["authenticator_class"] == "oauthenticator.generic.GenericOAuthenticator"
        assert out["GenericOAuthenticator"]["client_secret"] == OAUTH_SECRET
    else:
        assert out["GemAuthenticator"]["admin_password"] == gemhub_hub["admin-password"]
    if case == "external-postgresql":
        assert out["JupyterHub"]["template_vars"]["gemhub_ssh"] == {
            "port": 30022, "host": "ssh.example.com", "page": "/services/ssh/"}


@pytest.mark.parametrize("case", list(CASES))
def test_every_service_follows_the_one_pattern(case):
    objs = objects(case)
    hub_secret = secret_data(find(objs, "Secret", "hub"))
    hub_values = yaml.safe_load(hub_secret["values.yaml"])
    listed = yaml.safe_load(find(objs, "ConfigMap", "gemhub-hub-config")["data"]["services.yaml"])
    names = [o["metadata"]["name"].removeprefix("gemhub-") for o in objs
             if o["kind"] == "Deployment" and o["__source__"].startswith("gemhub/templates/")]
    assert set(SERVICES) <= set(names) and set(listed) == set(names)
    db_secret = "gemhub-database"
    for name in names:
        full = f"gemhub-{name}"
        dep = find(objs, "Deployment", full)
        for kind in ("Service", "ServiceAccount", "NetworkPolicy"):
            find(objs, kind, full)
        assert name in hub_values["hub"]["services"]  # registered: z2jh keeps its token
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in c["env"]}
        assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub", "key": f"hub.services.{name}.apiToken"}
        assert f"hub.services.{name}.apiToken" in hub_secret
        assert env["GEMHUB_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": db_secret, "key": name}
        assert name in secret_data(find(objs, "Secret", db_secret))
        assert c["command"][:3] == ["python3", "-m", f"gemhub.services.{name}.app"]
        port = find(objs, "Service", full)["spec"]["ports"][0]["port"]
        assert listed[name]["url"] == f"http://{full}:{port}"


def test_storage_database_and_gateway_follow_the_values():
    default = objects("default")
    for claim in ("gemhub-workspaces", "gemhub-datasets"):
        pvc = find(default, "PersistentVolumeClaim", claim)
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    sts = find(default, "StatefulSet", "gemhub-postgresql")
    assert sts["spec"]["replicas"] == 1
    dsn = secret_data(find(default, "Secret", "gemhub-database"))["quota"]
    assert dsn.startswith("postgresql://gemhub:") and dsn.endswith("@gemhub-postgresql:5432/gemhub_quota")
    inits = find(default, "Deployment", "gemhub-quota")["spec"]["template"]["spec"]["initContainers"]
    assert "CREATE DATABASE gemhub_quota" in inits[0]["command"][-1]
    assert find(default, "Service", "gemhub-ssh-gateway")["spec"]["type"] == "LoadBalancer"

    external = objects("external-postgresql")
    assert not [o for o in external if o["kind"] == "StatefulSet" and o["__source__"].startswith("gemhub/templates/")]
    assert secret_data(find(external, "Secret", "gemhub-database")) == DSNS
    gateway = find(external, "Service", "gemhub-ssh-gateway")["spec"]
    assert gateway["type"] == "NodePort" and gateway["ports"][0]["nodePort"] == 30022
    data_args = find(external, "Deployment", "gemhub-data")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--DataService.sftp_port=30022" in data_args

    own = chartkit.render({"database": {"type": "external", "external": {"existingSecret": "my-dsns"}}})
    assert not [o for o in own if o["kind"] == "Secret" and o["metadata"]["name"] == "gemhub-database"]
    env = find(own, "Deployment", "gemhub-quota")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "my-dsns", "key": "quota"} in [e.get("valueFrom", {}).get("secretKeyRef") for e in env]


# -- network policies and RBAC -------------------------------------------------------------------
@pytest.mark.parametrize("case", ["default", "kueue"])
def test_user_pods_reach_no_service_port_and_no_database(case):
    objs = gemhub_objects(case)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    for workload in (o for o in objs if o["kind"] in ("Deployment", "StatefulSet")):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        assert mine, f"{workload['metadata']['name']} has no NetworkPolicy"
        for policy in mine:
            assert "Ingress" in policy["spec"]["policyTypes"]
            for rule in admits(policy, USER_POD):
                # only the SSH gateway's public port is open to every source
                assert rule.get("ports") == [{"port": "ssh"}], (policy["metadata"]["name"], rule)
    pg = find(objs, "NetworkPolicy", "gemhub-postgresql")
    service_pod = find(objs, "Deployment", "gemhub-quota")["spec"]["template"]["metadata"]["labels"]
    assert admits(pg, service_pod) and not admits(pg, USER_POD)


def test_rbac_is_least_privilege():
    default = gemhub_objects("default")
    assert not [o for o in default if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    for sa in (o for o in default if o["kind"] == "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False

    objs = gemhub_objects("kueue")
    roles = [o for o in objs if o["kind"] in ("Role", "ClusterRole")]
    granted = {}
    crds = {(c["group"], c["plural"]): c["scope"] for c in _crd_schemas().values()}
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            assert not {"secrets", "pods/exec", "pods/attach", "nodes"} & set(rule["resources"])
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    granted.setdefault(role["metadata"]["name"], set()).add((group, res))
                    if (group, res) in crds:  # the CRD exists and its scope matches the role's
                        expected = "Cluster" if role["kind"] == "ClusterRole" else "Namespaced"
                        assert crds[(group, res)] == expected, (role["metadata"]["name"], group, res)
    quota_cluster = granted[f"gemhub-{chartkit.NAMESPACE}-quota-kueue"]
    assert quota_cluster == {("kueue.x-k8s.io", r) for r in ("resourceflavors", "clusterqueues",
                                                               "workloadpriorityclasses")}
    assert granted["gemhub-quota-kueue"] == {("kueue.x-k8s.io", "localqueues")}
    jobs = granted["gemhub-jobs-workloads"]
    for kind in (("trainer.kubeflow.org", "trainjobs"), ("kubeflow.org", "pytorchjobs"), ("kubeflow.org", "mpijobs"),
                 ("kubeflow.org", "tfjobs"), ("batch.volcano.sh", "jobs"), ("kueue.x-k8s.io", "workloads")):
        assert kind in jobs and kind in crds
    for name in ("quota", "jobs", "images"):
        assert find(objs, "ServiceAccount", f"gemhub-{name}")["automountServiceAccountToken"] is True
    for name in ("data", "ssh", "billing"):
        assert find(objs, "ServiceAccount", f"gemhub-{name}")["automountServiceAccountToken"] is False


def test_the_readme_values_reference_is_generated_from_the_schema():
    sys.path.insert(0, str(chartkit.REPO / "helm"))
    import values_reference

    readme = (chartkit.CHART / "README.md").read_text()
    assert values_reference.section() in readme, "run: python helm/values_reference.py --write"
