"""The Dockerfile: lint-clean, and its instructions agree with the package.

There is no Docker engine on our machines, so the image is not built here.
Instead: hadolint; the run instructions checked against pyproject.toml, the
exporter's defaults and the Helm chart; and the build stage's input (the
context that .dockerignore lets through) turned into a wheel, as the first
stage does, to prove it holds everything the package needs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO_ROOT, require_tool

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str
    stage: int  # index of the FROM it belongs to


def parse_dockerfile(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)


def final(keyword: str) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.keyword == keyword and i.stage == FINAL_STAGE]


def pyproject() -> dict[str, Any]:
    document: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return document


def test_hadolint_is_clean() -> None:
    hadolint = require_tool("hadolint")
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style",
                             str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_entrypoint_is_the_packages_console_script() -> None:
    (entrypoint,) = final("ENTRYPOINT")
    command = json.loads(entrypoint.arguments)  # exec form: no shell needed at run time
    assert command == ["scenario-exporter"]
    target = pyproject()["project"]["scripts"][command[0]]
    module_name, _, attribute = target.partition(":")
    module = __import__(module_name, fromlist=[attribute])
    assert callable(getattr(module, attribute))
    assert not final("CMD"), "flags belong to the user (docker run IMAGE --demo)"


def test_expose_is_the_default_listen_port() -> None:
    from exporter.config import Settings

    default = Settings.model_fields["listen_address"].default
    (expose,) = final("EXPOSE")
    assert expose.arguments == default.rpartition(":")[2]


def test_runs_as_the_fixed_non_root_user_the_chart_expects() -> None:
    (user,) = final("USER")
    uid, _, gid = user.arguments.partition(":")
    assert uid.isdigit() and gid.isdigit(), "numeric, so that runAsNonRoot can verify it"
    assert int(uid) != 0 and int(gid) != 0
    values = yaml.safe_load((REPO_ROOT / "helm/scenario-exporter/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)


def test_multi_stage_with_a_lean_final_stage() -> None:
    froms = [i for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(froms) >= 2
    build_base = froms[0].arguments.split()[0]
    assert froms[-1].arguments.split()[0] == build_base, "the venv links to the same python"
    for run in final("RUN"):
        for tool in ("pip ", "apt-get", "gcc", "curl", "wget"):
            assert tool not in run.arguments, f"final stage runs {tool.strip()}"
    (copy,) = [c for c in final("COPY") if "--from=" in c.arguments]
    assert copy.arguments.split()[-1] == "/opt/venv"
    build_runs = " ".join(i.arguments for i in INSTRUCTIONS
                          if i.keyword == "RUN" and i.stage < FINAL_STAGE)
    assert "--without-pip" in build_runs, "pip itself stays out of the final image"
    assert "--no-cache-dir" in build_runs
    assert "compileall" in build_runs, "bytecode compiled at build time, not at run time"


def test_read_only_root_filesystem_is_enough() -> None:
    env = " ".join(i.arguments for i in final("ENV"))
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env)
    assert re.search(r"\bPATH=\"?/opt/venv/bin:", env)
    (volume,) = final("VOLUME")
    assert json.loads(volume.arguments) == ["/tmp"]


def test_oci_labels() -> None:
    import exporter

    labels = " ".join(i.arguments for i in final("LABEL"))
    keys = set(re.findall(r"(org\.opencontainers\.image\.[a-z]+)=", labels))
    assert keys >= {f"org.opencontainers.image.{k}" for k in
                    ("title", "description", "version", "revision", "created", "licenses",
                     "source")}
    license_text = pyproject()["project"]["license"]["text"]
    assert f'org.opencontainers.image.licenses="{license_text}"' in labels
    args = {i.arguments.partition("=")[0]: i.arguments.partition("=")[2] for i in final("ARG")}
    assert args["VERSION"] == exporter.__version__


# --- The build context ---------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus **) as a regular expression."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i:end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def in_context(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negated, regex in rules:
        if any(regex.match(p) for p in prefixes):
            excluded = not negated
    return not excluded


def build_context() -> list[str]:
    rules = dockerignore_rules()
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                           timeout=60).stdout.split("\n")
    return sorted(f for f in files if f and (REPO_ROOT / f).is_file() and in_context(f, rules))


def test_dockerignore_matching() -> None:
    """The matcher below follows Docker's rules on a few known paths."""
    rules = dockerignore_rules()
    assert in_context("exporter/cli.py", rules)
    assert not in_context("exporter/__pycache__/cli.cpython-311.pyc", rules)
    assert not in_context("tests/test_helm.py", rules)
    assert not in_context(".git/HEAD", rules)
    assert not in_context("helm/scenario-exporter/values.yaml", rules)


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    context = build_context()
    assert "pyproject.toml" in context
    assert "exporter/__init__.py" in context
    for path in context:
        assert path in {"pyproject.toml", "README.md", "LICENSE"} or path.startswith(
            "exporter/"), f"{path} should not be in the build context"
        assert "__pycache__" not in path


def test_every_copy_source_is_in_the_context() -> None:
    context = build_context()
    for copy in (i for i in INSTRUCTIONS if i.keyword == "COPY" and "--from=" not in i.arguments):
        *sources, _destination = copy.arguments.split()
        for source in sources:
            source = source.rstrip("/")
            assert source in context or any(p.startswith(source + "/") for p in context), (
                f"COPY {source}: not in the build context")


def test_the_context_builds_the_wheel(tmp_path: Path) -> None:
    """What the build stage does with the context: a wheel with the console script."""
    context = tmp_path / "context"
    for relative in build_context():
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / relative, target)
    wheels = tmp_path / "wheels"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
                             "--disable-pip-version-check", "--quiet", "--wheel-dir",
                             str(wheels), str(context)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = wheels.glob("scenario_exporter-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        target = pyproject()["project"]["scripts"]["scenario-exporter"]
        assert f"scenario-exporter = {target}" in archive.read(entry_points).decode()
    packaged = {n for n in names if n.startswith("exporter/")}
    source = {f"exporter/{p.name}" for p in (REPO_ROOT / "exporter").glob("*.py")}
    assert source <= packaged

    # Then, as the build stage does: a venv without pip, the wheel installed by
    # the outer pip, bytecode compiled. Dependencies come from the test
    # environment here (no download). Starting the command must write nothing:
    # on a read-only root filesystem it could not.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--quiet", "--no-cache-dir", "--no-compile", "--no-deps",
                    "--disable-pip-version-check", str(wheel)], check=True, timeout=300)
    subprocess.run([str(python), "-m", "compileall", "-q", "--invalidation-mode",
                    "unchecked-hash", str(venv / "lib")], check=True, timeout=300)
    before = sorted(p for p in venv.rglob("*"))
    result = subprocess.run([str(venv / "bin" / "scenario-exporter"), "--version"],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("scenario-exporter ")
    assert sorted(p for p in venv.rglob("*")) == before, "the command wrote files in the venv"
