#!/usr/bin/env python3
"""Checks that the Kubernetes deployment in deploy/kubernetes/ holds together.

No cluster is needed: the manifests are parsed and compared with each other,
with the Dockerfile, with deploy/install-deps.sh, and with the binaries
themselves (every argument list of a SealFS container is given to its
binary to accept or refuse). Prints every check; exits 1 if any fails.

  check_manifests.py --meta BIN --data BIN --fuse BIN --cli BIN --csi BIN
                     [--manifests DIR] [--source-dir DIR]
"""

import argparse
import ipaddress
import os
import re
import subprocess
import sys

import yaml

IMAGE = "ghcr.io/sealfs/sealfs:0.1.0"
NAMESPACE = "sealfs-system"
DEFAULT_DRIVER = "csi.sealfs.io"
KUBELET_DIR = "/var/lib/kubelet"
# Sidecars come from sig-storage, each pinned to a released version.
SIDECARS = {
    "csi-provisioner": "registry.k8s.io/sig-storage/csi-provisioner",
    "csi-resizer": "registry.k8s.io/sig-storage/csi-resizer",
    "livenessprobe": "registry.k8s.io/sig-storage/livenessprobe",
    "csi-node-driver-registrar": "registry.k8s.io/sig-storage/csi-node-driver-registrar",
}
CSI_SECRET_KEYS = ("adminCredential", "volumeTokenKey")
# StorageClass secrets the plugin needs, and the keys each must hold.
SC_SECRETS = {
    "provisioner": CSI_SECRET_KEYS,
    "controller-expand": ("adminCredential",),
    "node-stage": ("volumeTokenKey",),
}
SC_PARAMETERS = ("inodes", "stripeWidth", "replication")
# Values the downward API would give, for running the binaries.
FIELD_VALUES = {
    "spec.nodeName": "node-1",
    "status.podIP": "10.1.2.3",
    "metadata.name": "pod-0",
    "metadata.namespace": NAMESPACE,
}
TEST_ONLY_PACKAGES = {"libgtest-dev", "libgmock-dev"}


class Checker:
    def __init__(self):
        self.failures = []
        self.passed = 0

    def check(self, condition, what, detail=""):
        if condition:
            self.passed += 1
            print(f"ok    {what}")
        else:
            self.failures.append(what)
            print(f"FAIL  {what}" + (f": {detail}" if detail else ""))
        return condition


def flag_values(args, name):
    """Values of --name=VALUE or --name VALUE in an argument list."""
    values = []
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            values.append(arg.split("=", 1)[1])
        elif arg == f"--{name}" and i + 1 < len(args) and not args[i + 1].startswith("--"):
            values.append(args[i + 1])
    return values


def flag(args, name, default=None):
    values = flag_values(args, name)
    return values[-1] if values else default


def has_flag(args, name):
    return any(a == f"--{name}" or a.startswith(f"--{name}=") for a in args)


def flag_names(args):
    return [a[2:].split("=", 1)[0] for a in args if a.startswith("--")]


def split_host_port(address):
    host, _, port = address.rpartition(":")
    return host, int(port) if port.isdigit() else None


def unix_path(endpoint):
    return endpoint[len("unix://"):] if endpoint and endpoint.startswith("unix://") else endpoint


def under(path, directory):
    return os.path.normpath(path).startswith(os.path.normpath(directory).rstrip("/") + "/")


class Pod:
    """A pod template and the workload it belongs to."""

    def __init__(self, workload, template):
        self.workload = workload
        self.name = f"{workload['kind']}/{workload['metadata']['name']}"
        self.spec = template.get("spec", {})
        self.labels = template.get("metadata", {}).get("labels", {})
        self.annotations = template.get("metadata", {}).get("annotations", {})
        self.containers = self.spec.get("containers", []) + self.spec.get("initContainers", [])
        self.volumes = {v["name"]: v for v in self.spec.get("volumes", [])}

    def container(self, name):
        return next((c for c in self.containers if c["name"] == name), None)

    def mount_of(self, container, directory):
        """The volume mount of the container that holds this directory."""
        best = None
        for mount in container.get("volumeMounts", []):
            path = mount["mountPath"]
            if os.path.normpath(directory) == os.path.normpath(path) or under(directory, path):
                if best is None or len(path) > len(best["mountPath"]):
                    best = mount
        return best


def sealfs_command(container):
    command = container.get("command") or []
    return os.path.basename(command[0]) if command else None


def expand_env(container, args, c):
    """Kubernetes' $(VAR) expansion, with downward API values made up."""
    env = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            env[entry["name"]] = FIELD_VALUES.get(field, "value-of-" + entry["name"])
    expanded = []
    for arg in args:
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
            c.check(var in env, f"{container['name']}: $({var}) in '{arg}' is defined in its env")
            arg = arg.replace(f"$({var})", env.get(var, ""))
        expanded.append(arg)
    return expanded


def run(binary, args):
    try:
        result = subprocess.run([binary] + args, capture_output=True, text=True, timeout=30)
    except OSError as error:
        return 127, str(error)
    return result.returncode, result.stdout + result.stderr


def usage_required_flags(usage):
    """Flags outside [...] in a usage text: the required ones."""
    text, depth, outside = usage, 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif depth == 0:
            outside.append(ch)
    outside = "".join(outside)
    # Only the synopsis (lines before the first "  --" explanation line).
    synopsis = []
    for line in outside.splitlines():
        if line.startswith("  --"):
            break
        synopsis.append(line)
    return set(re.findall(r"--([a-z][a-z0-9-]*)", "\n".join(synopsis)))


class Deployment:
    def __init__(self, manifests_dir, c):
        self.dir = manifests_dir
        self.c = c
        self.objects = []  # (file, object)
        self.files = sorted(f for f in os.listdir(manifests_dir) if f.endswith(".yaml"))
        for name in self.files:
            path = os.path.join(manifests_dir, name)
            try:
                with open(path) as stream:
                    documents = [d for d in yaml.safe_load_all(stream) if d is not None]
            except yaml.YAMLError as error:
                c.check(False, f"{name} parses as YAML", str(error).replace("\n", " "))
                continue
            c.check(bool(documents), f"{name} parses as YAML ({len(documents)} documents)")
            for doc in documents:
                complete = isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc
                if name != "kustomization.yaml":
                    complete = complete and "name" in doc.get("metadata", {})
                c.check(complete, f"{name}: {doc.get('kind', '?')} has apiVersion, kind, name")
                if complete:
                    self.objects.append((name, doc))

    def of_kind(self, kind):
        return [o for _, o in self.objects if o["kind"] == kind]

    def find(self, kind, name, namespace=None):
        for obj in self.of_kind(kind):
            meta = obj["metadata"]
            if meta.get("name") == name and (namespace is None or meta.get("namespace") == namespace):
                return obj
        return None

    def file_of(self, obj):
        return next(f for f, o in self.objects if o is obj)

    def pods(self):
        pods = []
        for _, obj in self.objects:
            template = obj.get("spec", {}).get("template")
            if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job") and template:
                pods.append(Pod(obj, template))
        return pods


def check_kustomization(d, c):
    kustomization = next((o for f, o in d.objects if f == "kustomization.yaml"), None)
    if not c.check(kustomization is not None, "kustomization.yaml exists"):
        return
    resources = kustomization.get("resources", [])
    for resource in resources:
        c.check(resource in d.files, f"kustomization resource {resource} exists")
    for name in d.files:
        if name in ("kustomization.yaml", "secrets.yaml"):
            continue
        c.check(name in resources, f"{name} is listed in kustomization.yaml")
    c.check("secrets.yaml" not in resources,
            "secrets.yaml (a template) is not applied by kustomization.yaml")


def check_namespace(d, c):
    namespaces = [o["metadata"]["name"] for o in d.of_kind("Namespace")]
    c.check(namespaces == [NAMESPACE], f"one Namespace, {NAMESPACE}", str(namespaces))
    cluster_scoped = {"Namespace", "CSIDriver", "StorageClass", "ClusterRole",
                      "ClusterRoleBinding", "Kustomization"}
    for f, obj in d.objects:
        if obj["kind"] in cluster_scoped:
            continue
        c.check(obj["metadata"].get("namespace") == NAMESPACE,
                f"{f}: {obj['kind']}/{obj['metadata']['name']} is in namespace {NAMESPACE}",
                str(obj["metadata"].get("namespace")))


def check_images(d, pods, c, source_dir):
    sidecar_tags = {}
    for pod in pods:
        for container in pod.containers:
            image = container.get("image", "")
            where = f"{pod.name} container {container['name']}"
            if image == IMAGE:
                c.check(sealfs_command(container) is not None,
                        f"{where}: runs {IMAGE} with an explicit command")
                continue
            repo, _, tag = image.rpartition(":")
            known = repo in SIDECARS.values()
            c.check(known, f"{where}: image {image} is {IMAGE} or a sig-storage sidecar")
            if known:
                c.check(re.fullmatch(r"v\d+\.\d+\.\d+", tag) is not None,
                        f"{where}: sidecar {image} is pinned to a released version")
                sidecar_tags.setdefault(repo, set()).add(tag)
    for repo, tags in sidecar_tags.items():
        c.check(len(tags) == 1, f"{repo} has one version everywhere", str(sorted(tags)))
    with open(os.path.join(source_dir, "README.md")) as stream:
        readme = stream.read()
    with open(os.path.join(d.dir, "Dockerfile")) as stream:
        dockerfile = stream.read()
    c.check(IMAGE in readme, f"README.md names the image {IMAGE}")
    c.check(IMAGE in dockerfile, f"Dockerfile names the image {IMAGE}")
    other = set(re.findall(r"ghcr\.io/sealfs/[a-z0-9-]+:[A-Za-z0-9.\-]+", readme + dockerfile))
    other |= {o.get("image") for p in pods for o in p.containers if "sealfs" in o.get("image", "")}
    c.check(other <= {IMAGE}, "no other SealFS image name in README, Dockerfile or manifests",
            str(sorted(other - {IMAGE})))


def check_dockerfile(d, pods, c, source_dir, binaries):
    with open(os.path.join(d.dir, "Dockerfile")) as stream:
        dockerfile = stream.read()
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    c.check(len(stages) == 2 and stages[0].startswith("debian:12") and stages[1] == "debian:12-slim",
            "Dockerfile: build stage FROM debian:12, runtime stage FROM debian:12-slim", str(stages))
    c.check("--preset release" in dockerfile, "Dockerfile builds with the release preset")
    # Every binary the manifests run is built and installed into /usr/local/bin.
    used = set()
    for pod in pods:
        for container in pod.containers:
            if container.get("image") != IMAGE:
                continue
            command = container["command"][0]
            used.add(command)
            for value in flag_values(container.get("args", []), "fuse-binary"):
                used.add(value)
    c.check("COPY --from=build /out/bin/ /usr/local/bin/" in dockerfile,
            "Dockerfile installs the built binaries into /usr/local/bin")
    for path in sorted(used):
        name = os.path.basename(path)
        c.check(os.path.dirname(path) == "/usr/local/bin" and
                re.search(rf"build/release/\w+/{re.escape(name)}\b", dockerfile) is not None,
                f"{path} (run by a manifest) is built and installed by the Dockerfile")
    for name, binary in binaries.items():
        rel = os.path.relpath(binary, os.path.dirname(os.path.dirname(binary)))
        c.check(f"build/release/{rel}" in dockerfile,
                f"Dockerfile copies {name} from where CMake builds it (build/release/{rel})")
    c.check("deploy/mount.sealfs" in dockerfile, "Dockerfile installs the mount helper mount.sealfs")
    # The build stage installs every library and compiler package of install-deps.sh.
    with open(os.path.join(source_dir, "deploy", "install-deps.sh")) as stream:
        install_deps = stream.read()
    listed = re.search(r"packages=\((.*?)\n\)", install_deps, re.S)
    packages = set()
    if listed:
        for line in listed.group(1).splitlines():
            packages.update(line.split("#", 1)[0].split())
    c.check("python3-yaml" in packages, "deploy/install-deps.sh installs python3-yaml (this test)")
    build_stage = dockerfile.split("FROM debian:12-slim")[0]
    for package in sorted(packages):
        if (package.endswith("-dev") or package.startswith("protobuf-compiler")) and \
                package not in TEST_ONLY_PACKAGES:
            c.check(re.search(rf"(?<![\w.+-]){re.escape(package)}(?![\w.+-])", build_stage)
                    is not None, f"Dockerfile build stage installs {package} (from install-deps.sh)")


def check_csidriver_and_storageclass(d, c, csi_bytes):
    drivers = d.of_kind("CSIDriver")
    if not c.check(len(drivers) == 1, "one CSIDriver"):
        return None
    driver = drivers[0]
    name = driver["metadata"]["name"]
    spec = driver.get("spec", {})
    expected = {"attachRequired": False, "podInfoOnMount": False, "fsGroupPolicy": "File",
                "volumeLifecycleModes": ["Persistent"], "requiresRepublish": False}
    for key, value in expected.items():
        c.check(spec.get(key) == value, f"CSIDriver {name}: {key} is {value}", str(spec.get(key)))
    classes = d.of_kind("StorageClass")
    c.check(len(classes) >= 1, "a StorageClass")
    for sc in classes:
        where = f"StorageClass {sc['metadata']['name']}"
        c.check(sc.get("provisioner") == name, f"{where}: provisioner is the CSIDriver's name {name}",
                str(sc.get("provisioner")))
        c.check(sc.get("allowVolumeExpansion") is True, f"{where}: allowVolumeExpansion")
        parameters = sc.get("parameters", {})
        for key, value in parameters.items():
            c.check(isinstance(value, str), f"{where}: parameter {key} is a string")
            if key.startswith("csi.storage.k8s.io/"):
                continue
            c.check(key in SC_PARAMETERS, f"{where}: parameter {key} is one the plugin understands")
            c.check(key.encode() in csi_bytes, f"{where}: sealfs-csi knows parameter {key}")
        for kind, keys in SC_SECRETS.items():
            secret_name = parameters.get(f"csi.storage.k8s.io/{kind}-secret-name")
            secret_ns = parameters.get(f"csi.storage.k8s.io/{kind}-secret-namespace")
            if not c.check(secret_name and secret_ns, f"{where}: names a {kind} secret"):
                continue
            secret = d.find("Secret", secret_name, secret_ns)
            if not c.check(secret is not None,
                           f"{where}: {kind} secret {secret_ns}/{secret_name} is in the templates"):
                continue
            data = dict(secret.get("stringData", {}), **secret.get("data", {}))
            for key in keys:
                c.check(key in data, f"{where}: {kind} secret {secret_name} holds key {key}")
    return name


def check_secret_templates(d, c, csi_bytes, cli):
    secrets = d.of_kind("Secret")
    c.check(all(d.file_of(s) == "secrets.yaml" for s in secrets),
            "every Secret is in the template file secrets.yaml")
    for secret in secrets:
        for key, value in secret.get("stringData", {}).items():
            c.check("sealfs keygen" in str(value),
                    f"Secret {secret['metadata']['name']}: {key} is a placeholder that says "
                    "how to generate it")
    for key in CSI_SECRET_KEYS:
        c.check(key.encode() in csi_bytes, f"sealfs-csi reads the secret key {key}")
    with open(os.path.join(d.dir, "secrets.yaml")) as stream:
        text = stream.read()
    code, usage = run(cli, ["--help"])
    for command in sorted(set(re.findall(r"\bsealfs (keygen)\b", text))):
        c.check(code == 0 and f"sealfs {command}" in usage,
                f"secrets.yaml: `sealfs {command}` is a command of the sealfs CLI")


def check_services(d, pods, c):
    for sts in d.of_kind("StatefulSet"):
        name = sts["metadata"]["name"]
        service = d.find("Service", sts["spec"].get("serviceName"), sts["metadata"]["namespace"])
        if not c.check(service is not None,
                       f"StatefulSet {name}: serviceName {sts['spec'].get('serviceName')} is a Service"):
            continue
        c.check(service["spec"].get("clusterIP") == "None", f"Service {service['metadata']['name']} "
                "is headless (stable pod DNS names)")
        labels = sts["spec"]["template"]["metadata"]["labels"]
        selector = service["spec"].get("selector", {})
        c.check(selector and all(labels.get(k) == v for k, v in selector.items()),
                f"Service {service['metadata']['name']} selects the pods of StatefulSet {name}")
        container_ports = {p["name"]: p["containerPort"] for ct in
                           sts["spec"]["template"]["spec"]["containers"] for p in ct.get("ports", [])}
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            number = container_ports.get(target) if isinstance(target, str) else target
            c.check(number == port["port"],
                    f"Service {service['metadata']['name']} port {port.get('name')} reaches "
                    f"container port {port['port']}", f"target {target} -> {number}")
        claims = sts["spec"].get("volumeClaimTemplates", [])
        c.check(bool(claims) and all(t["spec"].get("storageClassName") == "openebs-lvmpv"
                                     for t in claims),
                f"StatefulSet {name}: state on volumeClaimTemplates of class openebs-lvmpv")
        anti = (sts["spec"]["template"]["spec"].get("affinity", {}).get("podAntiAffinity", {})
                .get("requiredDuringSchedulingIgnoredDuringExecution", []))
        c.check(any(term.get("topologyKey") == "kubernetes.io/hostname" and
                    all(labels.get(k) == v for k, v in
                        term.get("labelSelector", {}).get("matchLabels", {}).items())
                    for term in anti),
                f"StatefulSet {name}: required pod anti-affinity per node on its own pods")


def meta_address(d):
    """The address clients use for the metadata server, from its manifests."""
    sts = next((s for s in d.of_kind("StatefulSet")
                if s["spec"]["template"]["spec"]["containers"][0].get("command", [""])[0]
                .endswith("sealfs-meta")), None)
    if sts is None:
        return None, None
    args = sts["spec"]["template"]["spec"]["containers"][0].get("args", [])
    _, port = split_host_port(flag(args, "listen", "127.0.0.1:7400"))
    prefix = f"{sts['metadata']['name']}-0.{sts['spec']['serviceName']}.{sts['metadata']['namespace']}.svc"
    return prefix, port


def check_meta_flag(d, where, value, c):
    prefix, port = meta_address(d)
    host, given_port = split_host_port(value or "")
    c.check(prefix is not None and (host == prefix or host.startswith(prefix + ".")) and
            given_port == port,
            f"{where}: --meta {value} is the metadata server's pod DNS name and port",
            f"expected {prefix}[.cluster domain]:{port}")


def check_secret_files(pod, container, args, c):
    for name in ("cluster-key", "admin-credential", "admin-credential-file",
                 "volume-token-key-file"):
        for path in flag_values(args, name):
            where = f"{pod.name} {container['name']} --{name} {path}"
            mount = pod.mount_of(container, os.path.dirname(path))
            volume = pod.volumes.get(mount["name"]) if mount else None
            secret = volume.get("secret") if volume else None
            if not c.check(secret is not None, f"{where} is in a mounted Secret"):
                continue
            relative = os.path.relpath(path, mount["mountPath"])
            items = secret.get("items")
            c.check(items is None or any(i["path"] == relative for i in items),
                    f"{where}: the Secret volume projects {relative}")
            mode = secret.get("defaultMode", 0o644)
            c.check(mode & 0o077 == 0, f"{where}: mode {oct(mode)} is owner-only (the servers "
                    "refuse secret files others can read)")
            c.check("fsGroup" not in pod.spec.get("securityContext", {}),
                    f"{pod.name}: no fsGroup (it would make secret files group-readable)")


def check_server(d, pod, container, binary, c):
    args = container.get("args", [])
    name = sealfs_command(container)
    where = f"{pod.name} {container['name']}"
    expanded = expand_env(container, args, c)
    code, usage = run(binary, expanded + ["--help"])
    c.check(code == 0, f"{where}: {name} accepts every flag ({' '.join(flag_names(args))})",
            usage.strip().splitlines()[0] if usage.strip() else f"exit {code}")
    _, usage = run(binary, ["--help"])
    for flag_name in flag_names(args):
        c.check(f"--{flag_name}" in usage, f"{where}: --{flag_name} is in {name}'s usage text")
    for required in sorted(usage_required_flags(usage)):
        alternatives = {"target": ("target", "dir")}.get(required, (required,))
        c.check(any(has_flag(args, a) for a in alternatives),
                f"{where}: required --{required} is given")
    listen = flag(expanded, "listen")
    if listen:
        host, port = split_host_port(listen)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        c.check(address is not None, f"{where}: --listen {flag(args, 'listen')} is an IP address "
                "(the TCP transport listens on addresses, not names)")
        ports = {p["containerPort"] for p in container.get("ports", [])}
        c.check(port in ports, f"{where}: listen port {port} is a container port")
        if name == "sealfs-data":
            c.check(address is not None and not address.is_unspecified and
                    "$(POD_IP)" in flag(args, "listen"),
                    f"{where}: listens on the pod IP, the address it advertises to clients")
    metrics = flag(expanded, "metrics-address")
    if c.check(metrics is not None, f"{where}: serves /metrics (--metrics-address)"):
        _, port = split_host_port(metrics)
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        c.check(ports.get("metrics") == port, f"{where}: metrics port {port} is container port "
                "'metrics'")
        annotation = pod.annotations.get("prometheus.io/port")
        c.check(annotation is None or annotation == str(port),
                f"{where}: prometheus.io/port annotation is the metrics port")
    if name == "sealfs-data":
        check_meta_flag(d, where, flag(args, "meta"), c)
    for state_flag in ("db", "target", "dir"):
        for path in flag_values(args, state_flag):
            mount = pod.mount_of(container, path)
            claims = {t["metadata"]["name"] for t in
                      pod.workload["spec"].get("volumeClaimTemplates", [])}
            c.check(mount is not None and mount["name"] in claims and under(path, mount["mountPath"]),
                    f"{where}: --{state_flag} {path} is inside its persistent volume")
    check_secret_files(pod, container, args, c)


def check_sidecar_socket(pod, plugin, socket, c):
    """Every sidecar of the pod reaches the plugin's socket through the same volume."""
    plugin_mount = pod.mount_of(plugin, os.path.dirname(socket))
    if not c.check(plugin_mount is not None, f"{pod.name}: the plugin's socket {socket} is on a volume"):
        return None
    for container in pod.containers:
        if container.get("image") == IMAGE:
            continue
        address = flag(container.get("args", []), "csi-address")
        if not c.check(address is not None, f"{pod.name} {container['name']}: has --csi-address"):
            continue
        path = unix_path(address)
        mount = pod.mount_of(container, os.path.dirname(path))
        same_file = (mount is not None and mount["name"] == plugin_mount["name"] and
                     os.path.relpath(path, mount["mountPath"]) ==
                     os.path.relpath(socket, plugin_mount["mountPath"]))
        c.check(same_file, f"{pod.name} {container['name']}: --csi-address {address} is the "
                f"plugin's socket {socket} (volume {plugin_mount['name']})")
    return plugin_mount


def check_csi_args(pod, container, csi, c):
    args = container.get("args", [])
    where = f"{pod.name} {container['name']}"
    expanded = expand_env(container, args, c)
    code, output = run(csi, expanded + ["--check-args"])
    c.check(code == 0 and "ok" in output.split(),
            f"{where}: `sealfs-csi {' '.join(args)} --check-args` accepts them",
            output.strip().replace("\n", " ") or f"exit {code}")


def check_csi_pods(d, pods, driver, c, csi):
    plugins = [(pod, ct) for pod in pods for ct in pod.containers
               if ct.get("image") == IMAGE and sealfs_command(ct) == "sealfs-csi"]
    modes = {}
    for pod, container in plugins:
        args = container.get("args", [])
        mode = flag(args, "mode", "both")
        modes.setdefault(mode, []).append((pod, container))
        where = f"{pod.name} {container['name']}"
        check_csi_args(pod, container, csi, c)
        check_secret_files(pod, container, args, c)
        if mode != "mounter" or has_flag(args, "meta"):
            check_meta_flag(d, where, flag(args, "meta"), c)
        if mode != "mounter":
            c.check(flag(args, "driver-name", DEFAULT_DRIVER) == driver,
                    f"{where}: driver name {flag(args, 'driver-name', DEFAULT_DRIVER)} is the "
                    f"CSIDriver's {driver}")
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            probe = container.get("livenessProbe", {}).get("httpGet", {})
            prober = next((ct for ct in pod.containers if "livenessprobe" in ct.get("image", "")), None)
            c.check(prober is not None and probe.get("port") in ports and
                    str(ports.get(probe.get("port"))) ==
                    flag(prober.get("args", []), "health-port", "9808"),
                    f"{where}: liveness probe asks the livenessprobe sidecar's --health-port")
    c.check(set(modes) >= {"controller", "node", "mounter"},
            "sealfs-csi runs as controller, node plugin and mounter", str(sorted(modes)))
    for mode in ("controller", "node"):
        for pod, container in modes.get(mode, []):
            socket = unix_path(flag(container.get("args", []), "endpoint"))
            c.check(socket is not None and socket.startswith("/"),
                    f"{pod.name} {container['name']}: --endpoint is unix://PATH")
            if socket:
                modes_mount = check_sidecar_socket(pod, container, socket, c)
                if mode == "node" and modes_mount:
                    check_registrar(pod, socket, modes_mount, driver, c)
    for pod, container in modes.get("controller", []):
        provisioner = next((ct for ct in pod.containers if "csi-provisioner" in ct.get("image", "")),
                           None)
        resizer = next((ct for ct in pod.containers if "csi-resizer" in ct.get("image", "")), None)
        c.check(provisioner is not None and resizer is not None,
                f"{pod.name}: runs csi-provisioner and csi-resizer")
        if provisioner:
            c.check("--extra-create-metadata" in provisioner.get("args", []),
                    f"{pod.name}: csi-provisioner runs with --extra-create-metadata")
        check_rbac(d, pod, c)
    for pod, container in modes.get("node", []):
        check_node_pod(pod, container, modes.get("mounter", []), c)


def check_registrar(pod, socket, plugin_mount, driver, c):
    registrar = next((ct for ct in pod.containers if "node-driver-registrar" in ct.get("image", "")),
                     None)
    if not c.check(registrar is not None, f"{pod.name}: runs node-driver-registrar"):
        return
    path = flag(registrar.get("args", []), "kubelet-registration-path")
    expected = f"{KUBELET_DIR}/plugins/{driver}/csi.sock"
    c.check(path == expected, f"{pod.name}: --kubelet-registration-path {path} is {expected}")
    host = pod.volumes.get(plugin_mount["name"], {}).get("hostPath", {}).get("path")
    on_host = host and os.path.join(host, os.path.relpath(socket, plugin_mount["mountPath"]))
    c.check(on_host == path, f"{pod.name}: the plugin's socket is {path} on the host",
            f"volume {plugin_mount['name']} puts it at {on_host}")
    registration = pod.mount_of(registrar, "/registration")
    c.check(registration is not None and pod.volumes[registration["name"]].get("hostPath", {})
            .get("path") == f"{KUBELET_DIR}/plugins_registry",
            f"{pod.name}: registrar's /registration is the kubelet's plugins_registry")


def check_node_pod(pod, plugin, mounters, c):
    args = plugin.get("args", [])
    mounter = next((ct for p, ct in mounters if p is pod), None)
    if not c.check(mounter is not None, f"{pod.name}: a sealfs-mounter container beside the node plugin"):
        return
    c.check(pod.workload["kind"] == "DaemonSet", f"{pod.name}: node plugin runs as a DaemonSet")
    strategy = pod.workload["spec"].get("updateStrategy", {}).get("type")
    c.check(strategy == "OnDelete", f"{pod.name}: updateStrategy OnDelete (a restart of the "
            "mounter drops the node's FUSE connections)", str(strategy))
    c.check("livenessProbe" not in mounter, f"{pod.name} {mounter['name']}: no liveness probe "
            "(it would restart the FUSE daemons' container)")
    c.check(plugin.get("env") and any(e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                                      == "spec.nodeName" for e in plugin["env"]) and
            flag(args, "node-id", "").startswith("$("),
            f"{pod.name}: --node-id is the node's name from the downward API")
    endpoint = flag(args, "mounter-endpoint")
    mounter_endpoint = flag(mounter.get("args", []), "endpoint")
    c.check(endpoint is not None and endpoint == mounter_endpoint,
            f"{pod.name}: node plugin's --mounter-endpoint {endpoint} is the mounter's --endpoint "
            f"{mounter_endpoint}")
    if endpoint:
        socket = unix_path(endpoint)
        mounts = [pod.mount_of(ct, os.path.dirname(socket)) for ct in (plugin, mounter)]
        c.check(all(mounts) and mounts[0]["name"] == mounts[1]["name"] and
                mounts[0]["mountPath"] == mounts[1]["mountPath"],
                f"{pod.name}: both containers mount the mounter socket's directory "
                f"{os.path.dirname(socket)} from one volume")
        volume = pod.volumes.get(mounts[0]["name"]) if mounts[0] else None
        host = volume.get("hostPath", {}) if volume else {}
        c.check(host.get("path") == "/var/lib/sealfs-csi" and host.get("type") == "DirectoryOrCreate",
                f"{pod.name}: the state directory is hostPath /var/lib/sealfs-csi (DirectoryOrCreate)")
        for container in (plugin, mounter):
            state = flag(container.get("args", []), "state-dir", "/var/lib/sealfs-csi")
            mount = pod.mount_of(container, state)
            c.check(mount is not None and mounts[0] is not None and
                    mount["name"] == mounts[0]["name"],
                    f"{pod.name} {container['name']}: --state-dir {state} is the state volume")
    for container in (plugin, mounter):
        where = f"{pod.name} {container['name']}"
        c.check(container.get("securityContext", {}).get("privileged") is True, f"{where}: privileged")
        fuse = pod.mount_of(container, "/dev/fuse")
        c.check(fuse is not None and pod.volumes[fuse["name"]].get("hostPath", {}).get("path")
                == "/dev/fuse", f"{where}: has /dev/fuse")
        kubelet = next((m for m in container.get("volumeMounts", [])
                        if m["mountPath"] == KUBELET_DIR), None)
        c.check(kubelet is not None and kubelet.get("mountPropagation") == "Bidirectional" and
                pod.volumes[kubelet["name"]].get("hostPath", {}).get("path") == KUBELET_DIR,
                f"{where}: mounts {KUBELET_DIR} with Bidirectional propagation")


def check_rbac(d, pod, c):
    account = pod.spec.get("serviceAccountName")
    namespace = pod.workload["metadata"]["namespace"]
    c.check(d.find("ServiceAccount", account, namespace) is not None,
            f"{pod.name}: ServiceAccount {account} exists")
    rules = []
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for binding in d.of_kind(kind):
            if not any(s.get("kind") == "ServiceAccount" and s.get("name") == account and
                       s.get("namespace") == namespace for s in binding.get("subjects", [])):
                continue
            ref = binding["roleRef"]
            role = d.find(ref["kind"], ref["name"],
                          binding["metadata"].get("namespace") if ref["kind"] == "Role" else None)
            c.check(ref["kind"] == role_kind or ref["kind"] == "ClusterRole",
                    f"{kind} {binding['metadata']['name']} refers to a {ref['kind']}")
            if c.check(role is not None, f"{kind} {binding['metadata']['name']}: {ref['kind']} "
                       f"{ref['name']} exists"):
                rules += role.get("rules", [])

    def allowed(group, resource, verb):
        return any(group in r.get("apiGroups", []) and resource in r.get("resources", []) and
                   verb in r.get("verbs", []) for r in rules)

    needs = [("", "secrets", "get", "StorageClass secrets"),
             ("", "persistentvolumes", "create", "provisioning"),
             ("", "persistentvolumes", "delete", "deleting"),
             ("", "persistentvolumeclaims", "watch", "provisioning"),
             ("storage.k8s.io", "storageclasses", "get", "provisioning"),
             ("", "events", "create", "events"),
             ("", "persistentvolumes", "patch", "resizing"),
             ("", "persistentvolumeclaims/status", "patch", "resizing"),
             ("coordination.k8s.io", "leases", "update", "leader election")]
    for group, resource, verb, why in needs:
        c.check(allowed(group, resource, verb),
                f"{account} may {verb} {resource} ({why})")


def check_readme(source_dir, c, cli):
    with open(os.path.join(source_dir, "README.md")) as stream:
        readme = stream.read()
    section = re.search(r"^## Deploy on Kubernetes\n(.*?)(?=^## )", readme, re.S | re.M)
    if not c.check(section is not None, "README.md has a section \"Deploy on Kubernetes\""):
        return
    text = section.group(1)
    c.check("kubectl apply -k deploy/kubernetes" in text, "README: kubectl apply -k deploy/kubernetes")
    c.check(NAMESPACE in text and "storageClassName: sealfs" in text,
            f"README: uses namespace {NAMESPACE} and StorageClass sealfs")
    code, usage = run(cli, ["--help"])
    for command in sorted(set(re.findall(r"\bsealfs (keygen|usage|volume|status)\b", text))):
        c.check(code == 0 and f"sealfs {command}" in usage,
                f"README: `sealfs {command}` is a command of the sealfs CLI")
    not_yet = readme.find("## Not there yet")
    c.check(not_yet < 0 or section.start() < not_yet, "README: the section comes before \"Not there yet\"")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", default=os.path.dirname(os.path.dirname(here)))
    parser.add_argument("--manifests")
    parser.add_argument("--bin-dir", help="(informational) where the sealfs CLI was built")
    parser.add_argument("--meta", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--fuse", required=True)
    parser.add_argument("--cli", required=True)
    parser.add_argument("--csi", required=True)
    options = parser.parse_args()
    manifests = options.manifests or os.path.join(options.source_dir, "deploy", "kubernetes")
    c = Checker()
    print(f"checking {manifests}")
    binaries = {"sealfs-meta": options.meta, "sealfs-data": options.data,
                "sealfs-fuse": options.fuse, "sealfs": options.cli, "sealfs-csi": options.csi}
    for name, path in binaries.items():
        c.check(os.access(path, os.X_OK) and os.path.basename(path) == name,
                f"binary {name} is {path}")
    # The plugin's own strings: the secret keys and parameters it reads.
    with open(options.csi, "rb") as stream:
        csi_bytes = stream.read()

    d = Deployment(manifests, c)
    pods = d.pods()
    check_kustomization(d, c)
    check_namespace(d, c)
    check_images(d, pods, c, options.source_dir)
    check_dockerfile(d, pods, c, options.source_dir, binaries)
    driver = check_csidriver_and_storageclass(d, c, csi_bytes)
    check_secret_templates(d, c, csi_bytes, options.cli)
    check_services(d, pods, c)
    servers = {"sealfs-meta": options.meta, "sealfs-data": options.data}
    for pod in pods:
        for container in pod.containers:
            name = sealfs_command(container)
            if container.get("image") == IMAGE and name in servers:
                check_server(d, pod, container, servers[name], c)
    check_csi_pods(d, pods, driver or DEFAULT_DRIVER, c, options.csi)
    check_readme(options.source_dir, c, options.cli)

    print(f"{c.passed} checks passed, {len(c.failures)} failed")
    if c.failures:
        print("failed:\n  " + "\n  ".join(c.failures))
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
