"""Render helm/gemhub offline, the way `helm template` would, with helm-python-sdk (Helm's
own Go SDK through ctypes: the chart repository cannot be reached from these machines).

The Zero to JupyterHub chart 4.4.0 comes from the project's shared folder
(``../shared/charts/jupyterhub``) and is copied into ``helm/gemhub/charts/`` (kept out of
git), which is what ``helm dependency build`` does where the repository can be reached.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "gemhub"
Z2JH_VERSION = "4.4.0"
NAMESPACE = "gemhub-test"
RELEASE = "gemhub"


def shared_dir() -> Path | None:
    """The project's shared folder: $GEMHUB_SHARED_DIR, else ``shared/`` beside the checkout
    (or beside the folder of worktrees)."""
    candidates = [os.environ.get("GEMHUB_SHARED_DIR", ""), REPO.parent / "shared", REPO.parent.parent / "shared"]
    for c in candidates:
        if c and (Path(c) / "charts" / "jupyterhub" / "Chart.yaml").exists():
            return Path(c)
    return None


def prepare_chart() -> Path:
    """helm/gemhub with z2jh under charts/ (copied once per version); skips when the shared
    chart or helm-python-sdk is missing."""
    pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (pip install -e '.[test]')")
    shared = shared_dir()
    if shared is None:
        pytest.skip("the Zero to JupyterHub chart is not in ../shared/charts/jupyterhub (set GEMHUB_SHARED_DIR)")
    dest = CHART / "charts" / "jupyterhub"
    src = shared / "charts" / "jupyterhub"
    current = dest / "Chart.yaml"
    if not current.exists() or yaml.safe_load(current.read_text())["version"] != Z2JH_VERSION:
        tmp = CHART / "charts" / ".jupyterhub.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return CHART


def crds_dir() -> Path | None:
    shared = shared_dir()
    return shared / "crds" if shared and (shared / "crds").is_dir() else None


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every object an install with ``values`` creates, each with its template path under
    ``__source__``."""
    import helm_python as helm

    with helm.Chart.load(str(prepare_chart())) as chart:
        manifests = chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__source__"] = path
                objects.append(doc)
    return objects


def clean(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "__source__"}


def find(objects: Iterable[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's values, decoded (data is base64; stringData is plain)."""
    out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})
    return out


def selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels and matchExpressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        value, op = labels.get(e["key"]), e["operator"]
        if (op == "In" and value not in e["values"]) or (op == "NotIn" and value in e["values"]) or \
                (op == "Exists" and e["key"] not in labels) or (op == "DoesNotExist" and e["key"] in labels):
            return False
    return True


def admits(policy: dict, pod_labels: dict) -> list:
    """The ingress rules of ``policy`` through which a pod with ``pod_labels`` (same
    namespace) may get in. Conservative: a rule without ``from`` admits everyone, and so
    does an ipBlock or a namespaceSelector without a podSelector."""
    def peer_admits(peer: dict) -> bool:
        if "ipBlock" in peer:
            return True
        if "podSelector" not in peer:
            return "namespaceSelector" in peer
        return selects(peer["podSelector"], pod_labels)

    return [rule for rule in policy["spec"].get("ingress") or []
            if not rule.get("from") or any(peer_admits(p) for p in rule["from"])]
