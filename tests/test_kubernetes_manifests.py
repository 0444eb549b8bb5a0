"""deploy/kubernetes/, checked offline: every manifest against the Kubernetes JSON schemas
(kubernetes-validate, which ships them), then what the schemas cannot see: probes speak gRPC on the port
fenliu serves, labels and selectors agree, every ConfigMap and Secret the pods name is made by the
kustomization (with the keys asked for), the arguments are flags ``fenliu serve`` has (its own parser
reads them), paths given in flags lie on the volumes meant for them, and the rules folder the kubelet
assembles from the ConfigMaps is a pack that passes every gate.

Each check is shown to bite: a broken copy of the folder per mistake must be refused, naming it. The
slow test serves the Deployment's own arguments on a folder laid out as the kubelet lays out a
ConfigMap volume, and swaps its ``..data`` link as a ConfigMap update does.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fenliu import PackError, load_pack
from fenliu._proto.fenliu.v1 import triage_pb2 as pb
from fenliu._proto.fenliu.v1 import triage_pb2_grpc as pb_grpc
from fenliu.cli.commands import build_parser
from fenliu.serving import convert
from fenliu.serving.runtime import prepare
from grpc_helpers import ROOT, ServeProcess

FOLDER = ROOT / "deploy" / "kubernetes"
#: The oldest Kubernetes the manifests are for (gRPC probes GA in 1.27; PDB unhealthyPodEvictionPolicy
#: GA in 1.31), and the newest the validator knows.
VERSIONS = ("1.31.0", kubernetes_validate.latest_version() + ".0")
#: Where the image keeps the reference pack and its corpus (README.md, "The image"); in the tests, the
#: repository's own.
IMAGE_ROOT = "/opt/fenliu"
CONFIGMAP_MAX_BYTES = 1 << 20  # the API server refuses a larger ConfigMap or Secret
LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/component")
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# ----------------------------------------------------------------------------------------------------
# Reading the folder


def _kustomization(folder: Path) -> dict[str, Any]:
    doc = yaml.load((folder / "kustomization.yaml").read_text("utf-8"), Loader=LOADER)
    assert isinstance(doc, dict)
    return doc


def _resources(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name in _kustomization(folder).get("resources", []):
        for doc in yaml.load_all((folder / name).read_text("utf-8"), Loader=LOADER):
            if doc is not None:
                out.append((name, doc))
    return out


def _generated_keys(folder: Path, entry: dict[str, Any]) -> dict[str, Path]:
    """A generator's keys and the files they come from (``key=path`` or the file's name)."""
    keys = {}
    for spec in entry.get("files", []):
        key, _, path = spec.partition("=") if "=" in spec else (Path(spec).name, "", spec)
        keys[key] = folder / path
    return keys


def _generators(folder: Path, kind: str) -> dict[str, dict[str, Path]]:
    k = _kustomization(folder)
    field = "configMapGenerator" if kind == "ConfigMap" else "secretGenerator"
    made = {g["name"]: _generated_keys(folder, g) for g in k.get(field, [])}
    for _, doc in _resources(folder):
        if doc.get("kind") == kind:
            made[doc["metadata"]["name"]] = {key: Path() for key in doc.get("data", {})}
    return made


def _flag_values(args: list[str]) -> dict[str, str]:
    out = {}
    for a in args:
        if a.startswith("--") and "=" in a:
            flag, _, value = a.partition("=")
            out[flag] = value
    return out


def _serve_flags() -> dict[str, argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    return {s: a for a in serve._actions for s in a.option_strings}


# ----------------------------------------------------------------------------------------------------
# The checks: every problem, as a line naming the file and what is wrong


def problems(folder: Path) -> list[str]:
    out: list[str] = []
    docs = _resources(folder)
    for name, doc in docs:
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
                where = "/".join(str(p) for p in getattr(e, "path", []))
                out.append(f"{name}: {doc.get('kind')} (Kubernetes {version}): {where}: {e.message}")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, doc in docs:
        by_kind.setdefault(doc.get("kind", ""), []).append(doc)
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        return [*out, f"kustomization: {len(deployments)} Deployments, expected one"]
    dep = deployments[0]
    out += _check_labels(dep, by_kind)
    out += _check_container(dep, by_kind)
    out += _check_references(folder, dep)
    out += _check_generated(folder)
    out += _check_rules_folder(folder, dep)
    return out


def _check_labels(dep: dict[str, Any], by_kind: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = []
    pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
    selector = dep["spec"]["selector"].get("matchLabels", {})
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        out.append(f"Deployment: selector {selector} does not select its pods {pod_labels}")
    for k in LABELS:
        if k not in selector:
            out.append(f"Deployment: selector lacks {k}")

    def selects(sel: dict[str, str], what: str) -> None:
        if sel != selector:
            out.append(f"{what}: selector {sel} differs from the Deployment's {selector}")

    for svc in by_kind.get("Service", []):
        selects(svc["spec"].get("selector", {}), f"Service {svc['metadata']['name']}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        selects(pdb["spec"].get("selector", {}).get("matchLabels", {}), "PodDisruptionBudget")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref.get("kind"), ref.get("name"), ref.get("apiVersion")) != (
            "Deployment",
            dep["metadata"]["name"],
            dep["apiVersion"],
        ):
            out.append(f"HorizontalPodAutoscaler: scales {ref}, not the Deployment")
        if hpa["spec"].get("minReplicas", 1) < 2:
            out.append("HorizontalPodAutoscaler: minReplicas below 2 (one replica is no failover)")
        if "replicas" in dep["spec"]:
            out.append("Deployment: sets replicas, which the HorizontalPodAutoscaler owns")
        for pdb in by_kind.get("PodDisruptionBudget", []):
            spec = pdb["spec"]
            if "minAvailable" in spec and int(spec["minAvailable"]) >= hpa["spec"].get("minReplicas", 1):
                out.append("PodDisruptionBudget: minAvailable leaves no pod to evict at minReplicas")
    for kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        if not by_kind.get(kind):
            out.append(f"kustomization: no {kind}")
    services = by_kind.get("Service", [])
    if services and all(s["spec"].get("clusterIP") != "None" for s in services):
        out.append("Service: none is headless (clusterIP: None), which round_robin clients need")
    return out


def _check_container(dep: dict[str, Any], by_kind: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = []
    pod = dep["spec"]["template"]["spec"]
    containers = pod["containers"]
    if len(containers) != 1:
        return [f"Deployment: {len(containers)} containers, expected one"]
    c = containers[0]
    args = list(c.get("args", []))
    if c.get("command") != ["fenliu"] or args[:1] != ["serve"]:
        out.append(f"Deployment: runs {c.get('command')} {args[:1]}, not `fenliu serve`")
    known = _serve_flags()
    for a in args[1:]:
        flag = a.partition("=")[0]
        if not a.startswith("--") or flag not in known:
            out.append(f"Deployment: args: {flag} is not a flag of `fenliu serve`")
    try:
        parsed = build_parser().parse_args(args)  # the service's own parser reads the manifest's args
    except SystemExit:
        out.append(f"Deployment: args: `fenliu {' '.join(args)}` is refused by its parser")
        parsed = None
    flags = _flag_values(args)
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    address = flags.get("--address", "")
    host, _, serving_port = address.rpartition(":")
    if host in ("", "127.0.0.1", "localhost", "[::1]"):
        out.append(f"Deployment: --address {address!r} is not reachable from outside the pod")
    if not serving_port.isdigit() or ports.get("grpc") != int(serving_port):
        out.append(f"Deployment: port grpc {ports.get('grpc')} is not the serving port of --address")
    metrics_host, _, metrics_port = flags.get("--metrics-address", "").rpartition(":")
    if metrics_host in ("", "127.0.0.1", "localhost") or ports.get("metrics") != int(metrics_port or 0):
        out.append("Deployment: port metrics is not the --metrics-address, reachable from outside the pod")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.get(kind)
        if probe is None:
            out.append(f"Deployment: no {kind}")
            continue
        if set(probe) & {"exec", "httpGet", "tcpSocket"} or "grpc" not in probe:
            out.append(f"Deployment: {kind} is not a grpc probe")
            continue
        if str(probe["grpc"].get("port")) != serving_port:
            out.append(
                f"Deployment: {kind} asks port {probe['grpc'].get('port')}, fenliu serves {serving_port}"
            )
        if probe["grpc"].get("service", "") not in ("", "fenliu.v1.TriageService"):
            out.append(
                f"Deployment: {kind} asks for health of {probe['grpc']['service']!r}, unknown to fenliu"
            )
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if parsed is not None and grace <= parsed.drain + parsed.grace + 10:
        out.append(
            f"Deployment: terminationGracePeriodSeconds {grace} does not cover --drain + --grace + 10 s"
        )
    for svc in by_kind.get("Service", []):
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            if (target not in ports) if isinstance(target, str) else (target not in ports.values()):
                out.append(f"Service: port {p.get('name')} targets {target!r}, which the container lacks")
        if {ports.get("grpc"), ports.get("metrics")} - {p["port"] for p in svc["spec"].get("ports", [])}:
            out.append("Service: does not expose both the gRPC and the metrics port")
    sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    wanted = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
    for k, v in wanted.items():
        if sc.get(k) is not v:
            out.append(f"Deployment: securityContext.{k} is not {v}")
    if sc.get("runAsUser") in (None, 0):
        out.append("Deployment: runAsUser not set to a non-root id")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        out.append("Deployment: capabilities are not all dropped")
    res = c.get("resources", {})
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(part, {}):
                out.append(f"Deployment: resources.{part}.{r} missing")
    out += _check_mounts(pod, c, flags)
    return out


def _check_mounts(pod: dict[str, Any], c: dict[str, Any], flags: dict[str, str]) -> list[str]:
    out = []
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = c.get("volumeMounts", [])
    for m in mounts:
        if m["name"] not in volumes:
            out.append(f"Deployment: volumeMount {m['name']} names no volume")

    def mount_of(path: str) -> dict[str, Any] | None:
        best = None
        for m in mounts:
            mp = m["mountPath"].rstrip("/")
            if (path == mp or path.startswith(mp + "/")) and (
                best is None or len(mp) > len(best["mountPath"])
            ):
                best = m
        return best

    def writable(path: str, what: str) -> None:
        m = mount_of(path)
        if m is None or m.get("readOnly") or "emptyDir" not in volumes.get(m["name"], {}):
            out.append(f"Deployment: {what} {path} is not on a writable emptyDir")

    writable("/tmp", "the temporary folder (worker metrics)")
    if "--decision-log" in flags:
        writable(flags["--decision-log"], "--decision-log")
    key_file = flags.get("--decision-log-key-file")
    if key_file is not None:
        m = mount_of(key_file)
        vol = volumes.get(m["name"], {}) if m else {}
        rel = key_file[len(m["mountPath"].rstrip("/")) + 1 :] if m else ""
        items = [i["path"] for i in vol.get("secret", {}).get("items", [])]
        if "secret" not in vol or (items and rel not in items):
            out.append(f"Deployment: --decision-log-key-file {key_file} is not a file of a Secret volume")
    rules = flags.get("--rules", "")
    m = mount_of(rules)
    if m is None or (
        "projected" not in volumes.get(m["name"], {}) and "configMap" not in volumes.get(m["name"], {})
    ):
        out.append(f"Deployment: --rules {rules} is not on a ConfigMap volume")
    elif rules.rstrip("/") != m["mountPath"].rstrip("/") + "/..data":
        out.append(
            f"Deployment: --rules {rules} is not the volume's ..data link (the mount itself holds "
            "the kubelet's timestamped folder too, a nested pack)"
        )
    return out


def _referenced(dep: dict[str, Any]) -> Iterator[tuple[str, str, str | None, list[str]]]:
    """(kind, name, key or None, item keys) of every ConfigMap and Secret the pod asks for."""
    pod = dep["spec"]["template"]["spec"]
    for v in pod.get("volumes", []):
        sources = v.get("projected", {}).get("sources", [v])
        for s in sources:
            for field, kind, name_field in (
                ("configMap", "ConfigMap", "name"),
                ("secret", "Secret", "secretName"),
            ):
                if field in s:
                    ref = s[field]
                    name = ref.get(name_field, ref.get("name"))
                    yield kind, name, None, [i["key"] for i in ref.get("items", [])]
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        for e in c.get("env", []):
            src = e.get("valueFrom", {})
            if "secretKeyRef" in src:
                yield "Secret", src["secretKeyRef"]["name"], src["secretKeyRef"]["key"], []
            if "configMapKeyRef" in src:
                yield "ConfigMap", src["configMapKeyRef"]["name"], src["configMapKeyRef"]["key"], []
        for e in c.get("envFrom", []):
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in e:
                    yield kind, e[field]["name"], None, []


def _check_references(folder: Path, dep: dict[str, Any]) -> list[str]:
    out = []
    made = {"ConfigMap": _generators(folder, "ConfigMap"), "Secret": _generators(folder, "Secret")}
    for kind, name, key, items in _referenced(dep):
        keys = made[kind].get(name)
        if keys is None:
            out.append(f"Deployment: {kind} {name} is not made by the kustomization")
            continue
        for k in [key, *items] if key else items:
            if k not in keys:
                out.append(f"Deployment: {kind} {name} has no key {k!r} in the kustomization")
    return out


def _check_generated(folder: Path) -> list[str]:
    out = []
    k = _kustomization(folder)
    ignored = (
        (folder / "secrets" / ".gitignore").read_text("utf-8").split()
        if (folder / "secrets" / ".gitignore").is_file()
        else []
    )
    for g in k.get("secretGenerator", []):
        for key, path in _generated_keys(folder, g).items():
            if path.parent != folder / "secrets" or "*" not in ignored:
                out.append(
                    f"kustomization: Secret {g['name']} key {key} comes from {path}, not git-ignored secrets/"
                )
    for g in k.get("configMapGenerator", []):
        keys = _generated_keys(folder, g)
        size = 0
        for key, path in keys.items():
            if not path.is_file():
                out.append(f"kustomization: ConfigMap {g['name']}: {path.relative_to(folder)} does not exist")
                continue
            size += len(key) + path.stat().st_size
        if size > CONFIGMAP_MAX_BYTES:
            out.append(f"kustomization: ConfigMap {g['name']} holds {size} bytes, above the 1 MiB limit")
        if g["name"] == "fenliu-rules" and not g.get("options", {}).get("disableNameSuffixHash"):
            out.append(
                "kustomization: ConfigMap fenliu-rules gets a name suffix: each change would roll the "
                "pods instead of reaching the running ones"
            )
    return out


# ----------------------------------------------------------------------------------------------------
# The rules folder, as the kubelet writes it


def _projection(folder: Path, dep: dict[str, Any], problems: list[str] | None = None) -> dict[str, bytes]:
    """The files (relative path -> bytes) of the volume mounted on ``--rules``, as the kubelet projects
    the ConfigMaps the kustomization makes; what goes astray is added to ``problems``."""
    problems = [] if problems is None else problems
    flags = _flag_values(dep["spec"]["template"]["spec"]["containers"][0].get("args", []))
    rules_mount = flags.get("--rules", "").removesuffix("/..data")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    name = next((m["name"] for m in c.get("volumeMounts", []) if m["mountPath"] == rules_mount), None)
    vol = next((v for v in dep["spec"]["template"]["spec"].get("volumes", []) if v["name"] == name), {})
    made = _generators(folder, "ConfigMap")
    files: dict[str, bytes] = {}
    for s in vol.get("projected", {}).get("sources", [vol]):
        ref = s.get("configMap")
        if ref is None or ref.get("name") not in made:
            continue
        keys = made[ref["name"]]
        items = ref.get("items") or [{"key": k, "path": k} for k in keys]
        listed = {i["key"] for i in items}
        for k in keys:
            if k not in listed:
                problems.append(
                    f"Deployment: ConfigMap {ref['name']} key {k} is not projected (no items path)"
                )
        for i in items:
            source = keys.get(i["key"])
            if source is None or not source.is_file():
                continue
            files[i["path"]] = source.read_bytes()
            # File for file the site pack's folder, so that the pack served has the digest of the one
            # reviewed (a flattened lexicon/ loads too, with another digest).
            if (
                source.parent.is_relative_to(folder / "pack")
                and source.relative_to(folder / "pack").as_posix() != i["path"]
            ):
                problems.append(
                    f"Deployment: {source.relative_to(folder)} lands at {i['path']} in the rules folder, "
                    "not where it is in the pack (use an items path)"
                )
    return files


def write_atomically(mount: Path, files: dict[str, bytes], stamp: str) -> None:
    """What the kubelet's AtomicWriter does: the files in a new ``..<timestamp>`` folder, a ``..data``
    link swapped to it by rename(2), a link per top-level name into ``..data``, the old folder removed."""
    mount.mkdir(parents=True, exist_ok=True)
    new = mount / f"..{stamp}"
    for rel, data in files.items():
        (new / rel).parent.mkdir(parents=True, exist_ok=True)
        (new / rel).write_bytes(data)
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    os.symlink(new.name, mount / "..data_tmp")
    os.rename(mount / "..data_tmp", mount / "..data")
    for top in {rel.split("/")[0] for rel in files}:
        if not (mount / top).is_symlink():
            os.symlink(f"..data/{top}", mount / top)
    if old:
        shutil.rmtree(mount / old)


def _image_paths(data: bytes) -> bytes:
    """The reference pack is where the image keeps it (README.md); here, in the repository."""
    return data.replace(IMAGE_ROOT.encode() + b"/", str(ROOT).encode() + b"/")


def _check_rules_folder(folder: Path, dep: dict[str, Any]) -> list[str]:
    out: list[str] = []
    files = _projection(folder, dep, out)
    sources = {p for g in _generators(folder, "ConfigMap").values() for p in g.values()}
    for path in sorted((folder / "pack").rglob("*")):
        if path.is_file() and path not in sources:
            out.append(
                f"kustomization: {path.relative_to(folder)} is in no ConfigMap: it would not be served"
            )
    if "pack.yaml" not in files:
        return [*out, "Deployment: the rules volume has no pack.yaml"]
    failed = _gates(tuple(sorted((k, _image_paths(v)) for k, v in files.items())))
    if failed:
        out.append(f"the rules volume is not a pack that passes its gates: {failed}")
    return out


@functools.cache
def _gates(files: tuple[tuple[str, bytes], ...]) -> str:
    """Empty when the folder of ``files``, laid out as the kubelet does, passes every gate a pack must pass
    to serve (it loads, lints clean, passes its cases and text floors); else why not."""
    with tempfile.TemporaryDirectory() as tmp:
        mount = Path(tmp) / "rules"
        write_atomically(mount, dict(files), "2026_12_04_10_00_00.1")
        decider, result = prepare(mount / "..data")
        if decider is None:
            return str(result)
        decider.close()
        return ""


# ----------------------------------------------------------------------------------------------------
# The tests


def test_kubernetes_manifests_shipped_have_no_problem() -> None:
    assert problems(FOLDER) == []
    # The Secrets' files are never committed: git ignores them where the kustomization reads them.
    for g in _kustomization(FOLDER)["secretGenerator"]:
        for path in _generated_keys(FOLDER, g).values():
            ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, check=False)
            assert ignored.returncode == 0, f"{path} is not ignored by git"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) is not installed")
def test_kubernetes_kustomization_builds_objects_the_schemas_accept(tmp_path: Path) -> None:
    # What `kubectl apply -k` would send, built locally (no cluster): generated ConfigMap and Secrets
    # included, the Secrets' suffixed names carried into the Deployment.
    folder = tmp_path / "kubernetes"
    shutil.copytree(FOLDER, folder)
    (folder / "secrets" / "decision-log-key").write_text("k" * 32)
    (folder / "secrets" / "store-url").write_text("postgresql://fenliu@db.invalid/fenliu")
    built = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    docs = list(yaml.safe_load_all(built.stdout))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Secret",
            "Secret",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
        ]
    )
    for d in docs:
        kubernetes_validate.validate(d, VERSIONS[0], strict=True)
    names = {d["metadata"]["name"] for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert {n for kind, n, _, _ in _referenced(dep)} <= names
    assert "fenliu-rules" in names  # no suffix: updated in place


def test_kubernetes_manifests_validator_works_offline_and_knows_the_kinds() -> None:
    # The schemas are in the package: a kind it has no schema for is an error, not a pass.
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(
            {"apiVersion": "apps/v1", "kind": "Deploymnet"}, VERSIONS[0], strict=True
        )


Mutation = Callable[[Path], None]


def _edit(file: str, change: Callable[[Any], None]) -> Mutation:
    def apply(folder: Path) -> None:
        path = folder / file
        docs = list(yaml.safe_load_all(path.read_text("utf-8")))
        change(docs[0])
        path.write_text(yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False), "utf-8")

    return apply


def _container(dep: Any) -> Any:
    return dep["spec"]["template"]["spec"]["containers"][0]


def _set_arg(flag: str, value: str | None) -> Callable[[Any], None]:
    def change(dep: Any) -> None:
        c = _container(dep)
        c["args"] = [a for a in c["args"] if not a.startswith(flag + "=")]
        if value is not None:
            c["args"].append(f"{flag}={value}")

    return change


def _write(rel: str, text: str) -> Mutation:
    def apply(folder: Path) -> None:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, "utf-8")

    return apply


def _add_lexicon_without_item(folder: Path) -> None:
    (folder / "pack" / "lexicon").mkdir()
    shutil.copy(ROOT / "rules" / "wushen" / "lexicon" / "neighbor.yaml", folder / "pack" / "lexicon")
    _edit(
        "kustomization.yaml",
        lambda k: k["configMapGenerator"].append(
            {"name": "fenliu-lexicon", "files": ["pack/lexicon/neighbor.yaml"]}
        ),
    )(folder)
    _edit(
        "deployment.yaml",
        lambda d: d["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"].append(
            {"configMap": {"name": "fenliu-lexicon"}}
        ),
    )(folder)


SITE_CASE = "cases:\n  - name: a wrong expectation\n    complaint: {id: k1, text: 拖欠工资}\n    expect: {category: neighbor}\n"

BROKEN: dict[str, tuple[Mutation, str]] = {
    "wrong type (schema)": (
        _edit("deployment.yaml", lambda d: d["spec"].update(revisionHistoryLimit="five")),
        "spec/revisionHistoryLimit: 'five' is not of type 'integer'",
    ),
    "misspelt field (strict schema)": (
        _edit("service.yaml", lambda s: s["spec"].update(clusterIp="None")),
        "clusterIp",
    ),
    "hpa without a target kind (schema)": (
        _edit("hpa.yaml", lambda h: h["spec"]["scaleTargetRef"].pop("kind")),
        "kind",
    ),
    "probe over http": (
        _edit(
            "deployment.yaml",
            lambda d: _container(d).update(livenessProbe={"httpGet": {"path": "/", "port": 9464}}),
        ),
        "livenessProbe is not a grpc probe",
    ),
    "probe on another port": (
        _edit("deployment.yaml", lambda d: _container(d)["readinessProbe"]["grpc"].update(port=50052)),
        "readinessProbe asks port 50052",
    ),
    "probe for an unknown health service": (
        _edit(
            "deployment.yaml", lambda d: _container(d)["startupProbe"]["grpc"].update(service="fenliu.Triage")
        ),
        "unknown to fenliu",
    ),
    "serving on another port than the container's": (
        _edit("deployment.yaml", _set_arg("--address", "0.0.0.0:6000")),
        "not the serving port",
    ),
    "serving on loopback": (
        _edit("deployment.yaml", _set_arg("--address", "127.0.0.1:50051")),
        "not reachable from outside the pod",
    ),
    "a flag serve does not have": (
        _edit(
            "deployment.yaml", lambda d: _container(d)["args"].append("--matter-store=$(FENLIU_STORE_URL)")
        ),
        "--matter-store is not a flag of `fenliu serve`",
    ),
    "a flag value its parser refuses": (
        _edit("deployment.yaml", _set_arg("--workers", "two")),
        "is refused by its parser",
    ),
    "service selects other pods": (
        _edit("service.yaml", lambda s: s["spec"]["selector"].update({"app.kubernetes.io/name": "fenliu-x"})),
        "Service fenliu: selector",
    ),
    "pdb selects other pods": (
        _edit("pdb.yaml", lambda p: p["spec"]["selector"]["matchLabels"].pop("app.kubernetes.io/component")),
        "PodDisruptionBudget: selector",
    ),
    "hpa scales another deployment": (
        _edit("hpa.yaml", lambda h: h["spec"]["scaleTargetRef"].update(name="fenliu-old")),
        "not the Deployment",
    ),
    "pdb blocks every eviction": (
        _edit("pdb.yaml", lambda p: (p["spec"].pop("maxUnavailable"), p["spec"].update(minAvailable=2))),
        "leaves no pod to evict",
    ),
    "service not headless": (
        _edit("service.yaml", lambda s: s["spec"].pop("clusterIP")),
        "none is headless",
    ),
    "secret the kustomization does not make": (
        _edit(
            "deployment.yaml",
            lambda d: _container(d)["env"][0]["valueFrom"]["secretKeyRef"].update(name="fenliu-db"),
        ),
        "Secret fenliu-db is not made by the kustomization",
    ),
    "secret key the kustomization does not make": (
        _edit(
            "deployment.yaml",
            lambda d: _container(d)["env"][0]["valueFrom"]["secretKeyRef"].update(key="dsn"),
        ),
        "has no key 'dsn'",
    ),
    "configmap the kustomization does not make": (
        _edit("kustomization.yaml", lambda k: k["configMapGenerator"][0].update(name="fenliu-pack")),
        "ConfigMap fenliu-rules is not made by the kustomization",
    ),
    "rules configmap with a name suffix": (
        _edit("kustomization.yaml", lambda k: k["configMapGenerator"][0].pop("options")),
        "gets a name suffix",
    ),
    "secret kept in git": (
        _edit("kustomization.yaml", lambda k: k["secretGenerator"][1].update(files=["url=store-url.txt"])),
        "not git-ignored secrets/",
    ),
    "rules mounted without ..data": (
        _edit("deployment.yaml", _set_arg("--rules", "/etc/fenliu/rules")),
        "not the volume's ..data link",
    ),
    "key file not on the secret volume": (
        _edit("deployment.yaml", _set_arg("--decision-log-key-file", "/etc/fenliu/rules/key")),
        "is not a file of a Secret volume",
    ),
    "decision log on the read-only root": (
        _edit("deployment.yaml", _set_arg("--decision-log", "/srv/decisions.jsonl")),
        "--decision-log /srv/decisions.jsonl is not on a writable emptyDir",
    ),
    "no writable /tmp": (
        _edit(
            "deployment.yaml",
            lambda d: _container(d).update(
                volumeMounts=[m for m in _container(d)["volumeMounts"] if m["mountPath"] != "/tmp"]
            ),
        ),
        "/tmp is not on a writable emptyDir",
    ),
    "root filesystem writable": (
        _edit(
            "deployment.yaml", lambda d: _container(d)["securityContext"].update(readOnlyRootFilesystem=False)
        ),
        "readOnlyRootFilesystem is not True",
    ),
    "no resources": (
        _edit("deployment.yaml", lambda d: _container(d).pop("resources")),
        "resources.requests.cpu missing",
    ),
    "grace shorter than drain and grace": (
        _edit(
            "deployment.yaml",
            lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=20),
        ),
        "does not cover --drain",
    ),
    "lexicon configmap without items paths": (_add_lexicon_without_item, "lands at neighbor.yaml"),
    "site pack that does not load": (
        _write(
            "pack/pack.yaml",
            "name: wushen-site\nrevision: '1'\ndescription: x\nextends: /opt/fenliu/rules/nowhere\n",
        ),
        "not a pack that passes its gates",
    ),
    "the reference model in the configmap": (
        lambda folder: (
            shutil.copy(ROOT / "rules" / "wushen" / "text_model.npz", folder / "pack"),
            _edit(
                "kustomization.yaml",
                lambda k: k["configMapGenerator"][0]["files"].append("pack/text_model.npz"),
            )(folder),
        ),
        "above the 1 MiB limit",
    ),
    "site file left out of the configmap": (
        _write("pack/site_test.yaml", SITE_CASE),
        "pack/site_test.yaml is in no ConfigMap",
    ),
    "site pack whose cases fail": (
        lambda folder: (
            _write("pack/site_test.yaml", SITE_CASE)(folder),
            _edit(
                "kustomization.yaml",
                lambda k: k["configMapGenerator"][0]["files"].append("pack/site_test.yaml"),
            )(folder),
        ),
        "not a pack that passes its gates",
    ),
}


def test_kubernetes_lexicon_subfolder_projected_by_items_paths_loads(tmp_path: Path) -> None:
    folder = tmp_path / "kubernetes"
    shutil.copytree(FOLDER, folder)
    _add_lexicon_without_item(folder)
    _edit(
        "deployment.yaml",
        lambda d: d["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"][-1]["configMap"].update(
            items=[{"key": "neighbor.yaml", "path": "lexicon/neighbor.yaml"}]
        ),
    )(folder)
    assert problems(folder) == []
    dep = next(d for _, d in _resources(folder) if d["kind"] == "Deployment")
    write_atomically(tmp_path / "rules", _projection(folder, dep), "2026_12_04_10_00_00.1")
    assert (tmp_path / "rules" / "lexicon").is_symlink()
    assert (tmp_path / "rules" / "..data" / "lexicon" / "neighbor.yaml").is_file()


@pytest.mark.parametrize("mistake", sorted(BROKEN))
def test_kubernetes_manifests_broken_copy_is_refused(mistake: str, tmp_path: Path) -> None:
    folder = tmp_path / "kubernetes"
    shutil.copytree(FOLDER, folder)
    mutate, expected = BROKEN[mistake]
    mutate(folder)
    found = problems(folder)
    assert any(expected in p for p in found), found


def test_kubernetes_rules_mount_itself_is_not_a_pack(tmp_path: Path) -> None:
    # Why --rules names ..data: the mount holds the kubelet's ..<timestamp> folder beside the links.
    dep = next(d for _, d in _resources(FOLDER) if d["kind"] == "Deployment")
    files = {k: _image_paths(v) for k, v in _projection(FOLDER, dep).items()}
    write_atomically(tmp_path / "rules", files, "2026_12_04_10_00_00.1")
    with pytest.raises(PackError) as e:
        load_pack(tmp_path / "rules")
    assert "nested-pack" in str(e.value.problems)
    assert load_pack(tmp_path / "rules" / "..data").name == "wushen-site"


def _deployment_args(mount: Path, state: Path, secrets: Path) -> list[str]:
    """The Deployment's own ``fenliu serve`` arguments, with the pod's paths mapped to folders here."""
    dep = next(d for _, d in _resources(FOLDER) if d["kind"] == "Deployment")
    c = _container(dep)
    paths = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    here = {"rules": mount, "state": state, "secrets": secrets, "tmp": state}
    args = []
    for a in c["args"][1:]:
        flag, _, value = a.partition("=")
        if flag in ("--address", "--metrics-address"):
            value = "127.0.0.1:0" if flag == "--address" else ""
        for mp, name in sorted(paths.items(), key=lambda p: -len(p[0])):
            if value.startswith(mp + "/"):
                value = str(here[name]) + value[len(mp) :]
                break
        if value:
            args.append(f"{flag}={value}")
    return args


@pytest.mark.slow
def test_kubernetes_configmap_update_reaches_the_running_server(tmp_path: Path) -> None:
    dep = next(d for _, d in _resources(FOLDER) if d["kind"] == "Deployment")
    files = {k: _image_paths(v) for k, v in _projection(FOLDER, dep).items()}
    mount, state, secrets = tmp_path / "rules", tmp_path / "state", tmp_path / "secrets"
    state.mkdir()
    secrets.mkdir()
    (secrets / "decision-log-key").write_text("k" * 32)
    write_atomically(mount, files, "2026_12_04_10_00_00.1")
    args = _deployment_args(mount, state, secrets)
    assert any(a.endswith("/rules/..data") for a in args), args
    probe = _container(dep)["readinessProbe"]["grpc"].get("service", "")
    sp = ServeProcess(args, tmp_path / "serve.log")
    try:
        sp.wait_for("watch_started", timeout=30)
        complaint = convert.complaint_to_proto({"id": "k8s-1", "text": "邻居排水"})
        with grpc.insecure_channel(sp.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in {probe, ""}:  # what the probes ask
                status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
                assert status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.TriageServiceStub(channel)
            first = stub.Triage(pb.TriageRequest(complaint=complaint), timeout=10).decision.rule_pack
            assert (first.name, first.revision) == ("wushen-site", "2026.12.1-site.1")

        # `kubectl apply` of a changed ConfigMap: the kubelet writes a new folder and swaps ..data.
        updated = dict(files)
        updated["pack.yaml"] = files["pack.yaml"].replace(b"2026.12.1-site.1", b"2026.12.1-site.2")
        swapped = time.monotonic()
        write_atomically(mount, updated, "2026_12_04_10_05_00.2")
        deadline = swapped + 60
        seen = set()
        with grpc.insecure_channel(sp.target) as channel:
            stub = pb_grpc.TriageServiceStub(channel)
            while time.monotonic() < deadline:
                d = stub.Triage(pb.TriageRequest(complaint=complaint), timeout=10).decision
                seen.add(d.rule_pack.revision)
                if d.rule_pack.revision == "2026.12.1-site.2":
                    break
                time.sleep(0.2)
        assert "2026.12.1-site.2" in seen, (seen, sp.events("watch_rearmed"))
        reasons = [e.get("reason") for e in sp.events("watch_rearmed")]
        print(f"\n..data swapped: new revision served after {time.monotonic() - swapped:.1f} s ({reasons})")
        assert not (mount / "..2026_12_04_10_00_00.1").exists()
        assert sp.events("watch_rearmed"), "the swap was not followed as a folder replacement"
    finally:
        assert sp.stop() == 0
