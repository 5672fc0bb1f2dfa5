"""Run a rendered Deployment's container as a local process, the way a kubelet would start
it: its command and args ($(VAR) expanded), its environment (values, Secret and ConfigMap
keys, the pod's namespace, the Services' *_SERVICE_HOST/PORT links), its volumes (Secret
and ConfigMap files, claims, emptyDirs) mounted at their paths in a private mount namespace
(mountns.py), and the cluster's DNS names in /etc/hosts. The image is this machine: its
programs come from PATH (the venv, node_modules/.bin).

What is not emulated: the image's user (processes run as the caller), resource limits,
probes, init containers.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent
MOUNTNS = HERE / "mountns.py"


def _data(obj: dict[str, Any]) -> dict[str, bytes]:
    """The files of a Secret or ConfigMap."""
    out: dict[str, bytes] = {}
    if obj["kind"] == "Secret":
        out.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        out.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    else:
        out.update({k: v.encode() for k, v in (obj.get("data") or {}).items()})
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


@dataclass
class Cluster:
    """The rendered objects plus where this machine keeps what the cluster would store."""

    objects: list[dict[str, Any]]
    namespace: str
    workdir: Path
    extra_hosts: tuple[str, ...] = ()
    claims: dict[str, Path] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        raise KeyError(f"{kind}/{name} is not rendered")

    def services(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == "Service"]

    def hosts_file(self) -> Path:
        """Every Service's DNS names (short, namespaced, fully qualified) on the loopback."""
        path = self.workdir / "hosts"
        names = []
        for svc in self.services():
            n = svc["metadata"]["name"]
            names += [n, f"{n}.{self.namespace}", f"{n}.{self.namespace}.svc", f"{n}.{self.namespace}.svc.cluster.local"]
        names += list(self.extra_hosts)
        path.write_text("127.0.0.1 localhost\n::1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in names))
        return path

    def service_links(self) -> dict[str, str]:
        """What Kubernetes puts in every container's environment for the Services."""
        env = {}
        for svc in self.services():
            prefix = svc["metadata"]["name"].upper().replace("-", "_")
            ports = svc["spec"].get("ports") or []
            env[f"{prefix}_SERVICE_HOST"] = "127.0.0.1"
            if ports:
                env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
            for p in ports:
                if p.get("name"):
                    env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
        return env

    def claim(self, name: str) -> Path:
        path = self.claims.setdefault(name, self.workdir / "claims" / name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- one container -----------------------------------------------------------------
    def container(self, kind: str, name: str, container: str | None = None) -> tuple[dict, dict]:
        pod = self.get(kind, name)["spec"]["template"]
        spec = pod["spec"]
        containers = spec["containers"]
        c = containers[0] if container is None else next(x for x in containers if x["name"] == container)
        return pod, c

    def env(self, pod: dict, c: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        if pod["spec"].get("enableServiceLinks", True):
            env.update(self.service_links())
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = _expand(str(e["value"]), env)
                continue
            src = e["valueFrom"]
            if "secretKeyRef" in src or "configMapKeyRef" in src:
                ref = src.get("secretKeyRef") or src["configMapKeyRef"]
                kind = "Secret" if "secretKeyRef" in src else "ConfigMap"
                try:
                    env[e["name"]] = _data(self.get(kind, ref["name"]))[ref["key"]].decode()
                except KeyError:
                    if not ref.get("optional"):
                        raise
            elif "fieldRef" in src:
                field_path = src["fieldRef"]["fieldPath"]
                env[e["name"]] = {"metadata.namespace": self.namespace, "status.podIP": "127.0.0.1",
                                  "metadata.name": name_of(pod)}[field_path]
            else:
                raise NotImplementedError(f"env {e['name']}: {src}")
        return env

    def volume_source(self, pod: dict, mount: dict) -> Path:
        (vol,) = [v for v in pod["spec"].get("volumes") or [] if v["name"] == mount["name"]]
        base = self.workdir / "volumes" / name_of(pod) / vol["name"]
        if "configMap" in vol or "secret" in vol:
            ref = vol.get("configMap") or vol["secret"]
            obj = self.get("ConfigMap" if "configMap" in vol else "Secret",
                           ref.get("name") or ref.get("secretName"))
            files = _data(obj)
            items = ref.get("items") or [{"key": k, "path": k} for k in files]
            mode = ref.get("defaultMode", 0o644)
            base.mkdir(parents=True, exist_ok=True)
            for item in items:
                path = base / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(files[item["key"]])
                path.chmod(item.get("mode", mode))
            source = base
        elif "persistentVolumeClaim" in vol:
            source = self.claim(vol["persistentVolumeClaim"]["claimName"])
        elif "emptyDir" in vol:
            base.mkdir(parents=True, exist_ok=True)
            source = base
        else:
            raise NotImplementedError(f"volume {vol}")
        if mount.get("subPath"):
            source = source / mount["subPath"]
            if not source.exists():  # the kubelet makes a missing subPath folder
                source.mkdir(parents=True)
        return source

    def start(self, kind: str, name: str, *, container: str | None = None, workdir: str = "/",
              extra_env: dict[str, str] | None = None, path: Iterable[str] = (), log: Path | None = None,
              argv_map: dict[str, list[str]] | None = None) -> subprocess.Popen:
        """Start the container of ``kind/name`` (``workdir``: the image's WORKDIR)."""
        pod, c = self.container(kind, name, container)
        env = self.env(pod, c)
        argv = [_expand(a, env) for a in (c.get("command") or []) + (c.get("args") or [])]
        if argv_map and argv[0] in argv_map:
            argv = argv_map[argv[0]] + argv[1:]
        mounts = [{"source": str(self.volume_source(pod, m)), "target": m["mountPath"],
                   "readonly": bool(m.get("readOnly"))} for m in c.get("volumeMounts") or []]
        spec = {"mounts": mounts, "hosts": str(self.hosts_file()), "cwd": c.get("workingDir") or workdir}
        spec_file = self.workdir / f"{name}-{c['name']}.mountns.json"
        spec_file.write_text(json.dumps(spec, indent=1))
        env.update(extra_env or {})
        env["PATH"] = os.pathsep.join([*path, "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"])
        env.setdefault("HOME", "/tmp")
        env.setdefault("LANG", "C.UTF-8")
        out = open(log or self.workdir / f"{name}.log", "ab")
        try:
            return subprocess.Popen([sys.executable, str(MOUNTNS), str(spec_file), "--", *argv], env=env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()

    def wrapper(self) -> list[str]:
        """An argv prefix giving a process the cluster's DNS names (for the test kubelet's pods)."""
        spec_file = self.workdir / "pod.mountns.json"
        spec_file.write_text(json.dumps({"mounts": [], "hosts": str(self.hosts_file()), "cwd": ""}))
        return [sys.executable, str(MOUNTNS), str(spec_file), "--"]


def name_of(pod: dict) -> str:
    labels = pod.get("metadata", {}).get("labels") or {}
    return labels.get("app.kubernetes.io/component") or labels.get("component") or "pod"


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) references to the container's own variables."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)
