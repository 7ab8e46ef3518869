"""deploy/kubernetes/ as ``podman kube play`` can run it.

:func:`build` is the kustomize build of a kustomization that only lists plain resources (no
``kubectl kustomize`` needed): the listed files' documents, in order, with the
kustomization's labels. :func:`for_podman` adapts them to what podman 4.3 plays: it has no
Services (its DNS knows each pod as ``NAME-pod-0``, which the entry point tries) and no
StatefulSet (Redis becomes a one-replica Deployment with an emptyDir where its volume claim
was); and podman 4.3 would publish each ``containerPort`` on the host (on every address),
so the ports (only informative in Kubernetes) are left out.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from services.containers.kube import FOLDER


def build(folder: Path = FOLDER) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    labels: dict[str, str] = {}
    for entry in kustomization.get("labels", []):
        labels.update(entry["pairs"])
    documents = []
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((folder / name).read_text()):
            document["metadata"].setdefault("labels", {}).update(labels)
            documents.append(document)
    return documents


def for_podman(documents: list[dict[str, Any]], image: str, dns_port: int = 5300,
               ) -> list[dict[str, Any]]:
    played = []
    for original in documents:
        document = copy.deepcopy(original)
        if document["kind"] == "Service":
            continue
        if document["kind"] == "StatefulSet":
            spec = document["spec"]
            claims = spec.pop("volumeClaimTemplates", [])
            spec.pop("serviceName", None)
            document["kind"] = "Deployment"
            spec["template"]["spec"]["volumes"] = [{"name": c["metadata"]["name"],
                                                    "emptyDir": {}} for c in claims]
        if document["kind"] == "Deployment":
            for container in document["spec"]["template"]["spec"]["containers"]:
                container["image"] = image
                for variable in container.get("env", []):
                    # No Service maps 53 to the DNS pod's port: the clients ask that port.
                    if variable["name"] == "DNSRACE_DNS_PORT":
                        variable["value"] = str(dns_port)
                # podman 4.3 publishes every containerPort on the host's every address.
                container.pop("ports", None)
        played.append(document)
    return played
