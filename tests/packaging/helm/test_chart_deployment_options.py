"""Deployment options operators expect (issue 14): a PodDisruptionBudget and the update
strategy, extra manifests and extra containers, templated with the release.
"""

from __future__ import annotations

import pytest

from testkit.helm import (
    NAMESPACE,
    RELEASE,
    RenderError,
    ci_values,
    of_kind,
    one,
    pod_spec,
    render,
)


def test_pod_disruption_budget_and_strategy() -> None:
    objects = render(ci_values("operator-options"))
    deployment = one(objects, "Deployment")
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"] == {"minAvailable": "50%",
                              "selector": deployment["spec"]["selector"]}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    default = render(sets=["podDisruptionBudget.enabled=true"])
    assert one(default, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert "strategy" not in one(default, "Deployment")["spec"], "Kubernetes' default"
    with pytest.raises(RenderError, match="set minAvailable or maxUnavailable, not both"):
        render(sets=["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1",
                     "podDisruptionBudget.maxUnavailable=1"])


def test_extra_manifests_and_containers_are_templated() -> None:
    objects = render(ci_values("everything-on"))
    extra = {o["metadata"]["name"]: o for o in of_kind(objects, "ConfigMap")}
    assert extra[f"{RELEASE}-extra-string"]["data"] == {"note": "a template string"}
    pod = pod_spec(objects)
    assert [c["name"] for c in pod["containers"]] == ["exporter", "sidecar"]
    assert pod["containers"][1]["args"] == [f"--target={RELEASE}"]
    mapped = one(render(ci_values("operator-options")), "ConfigMap")
    assert mapped["metadata"]["name"] == f"{RELEASE}-extra"
    assert mapped["metadata"]["namespace"] == NAMESPACE
