"""The Dockerfile: lint-clean, and the image really built and run.

buildah builds the real Dockerfile without a daemon (``--isolation chroot``,
``--storage-driver vfs``) on a Debian base that ``debootstrap`` makes with
Python from Debian's packages, passed in as ``PYTHON_IMAGE``: no image
registry is needed. The build's ``pip`` is pointed with ``PIP_INDEX_URL`` at a
package mirror on loopback (the wheels of pyproject.toml's requirements,
downloaded once), which proves that mirrors work and keeps the build off the
network. The image is then run in demo mode: /metrics is scraped, the process
must run as 10001, and its root filesystem must not change outside /tmp.

The base image and the wheels are cached under .cache/ (reruns take seconds);
the built image is removed at the end. Needs root (as CI and scripts/test.sh
have); skipped with the reason elsewhere, and failed in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from testkit.processes import ExporterProcess, clean_environment
from testkit.repo import IN_CI, REPO_ROOT
from testkit.tools import require_tool
from testkit.waiting import wait_for

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

DOCKERFILE = REPO_ROOT / "Dockerfile"
CACHE = REPO_ROOT / ".cache" / "image-test"
SUITE = "bookworm"  # the Debian release of the Dockerfile's default base
BASE_PACKAGES = "python3,python3-venv,python3-pip"
BASE_IMAGE = f"localhost/scenario-exporter-test-base:{SUITE}"
IMAGE = "localhost/scenario-exporter:test"
UID = 10001


def pyproject() -> dict[str, Any]:
    document: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return document


def test_hadolint_is_clean() -> None:
    hadolint = require_tool("hadolint")
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style",
                             str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


# --- buildah ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Buildah:
    """buildah with the test's own storage under .cache/, so nothing else is touched."""

    executable: str

    def command(self, *args: str) -> list[str]:
        return [self.executable, "--root", str(CACHE / "storage"), "--runroot",
                str(CACHE / "run"), "--storage-driver", "vfs", *args]

    def __call__(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(self.command(*args), capture_output=True, text=True,
                                timeout=timeout, check=False)
        assert result.returncode == 0, (f"buildah {' '.join(args)}:\n"
                                        + result.stdout[-3000:] + result.stderr[-3000:])
        return result.stdout.strip()

    def has_image(self, name: str) -> bool:
        result = subprocess.run(self.command("inspect", "--type", "image", name),
                                capture_output=True, timeout=60, check=False)
        return result.returncode == 0


def _usable_buildah() -> Buildah:
    executable = require_tool("buildah")
    require_tool("debootstrap")
    if os.geteuid() != 0:
        message = "buildah's chroot isolation and debootstrap need root here"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return Buildah(executable)


def _debian_base(buildah: Buildah) -> str:
    """The Debian base image with Python, made by debootstrap once and kept in the cache."""
    if buildah.has_image(BASE_IMAGE):
        return BASE_IMAGE
    rootfs = CACHE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    mirror = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
    result = subprocess.run([require_tool("debootstrap"), "--variant=minbase",
                             f"--include={BASE_PACKAGES}", SUITE, str(rootfs), mirror],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Package lists and downloaded .debs are not part of a base image.
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    archive = CACHE / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    container = buildah("from", "scratch")
    buildah("add", container, str(archive), "/")
    buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            container)
    buildah("commit", "--rm", container, BASE_IMAGE)
    archive.unlink()
    shutil.rmtree(rootfs)
    return BASE_IMAGE


# --- a package mirror on loopback ------------------------------------------------------------


def _requirements() -> list[str]:
    """What the build's pip fetches: the build system's and the package's requirements."""
    document = pyproject()
    return [*document["build-system"]["requires"], *document["project"]["dependencies"]]


def _wheelhouse(buildah: Buildah, base: str) -> Path:
    """The wheels of every requirement for the base's Python, downloaded once."""
    version = buildah("run", "--isolation", "chroot", buildah("from", base), "--", "python3",
                      "-c", "import sys; print('%d.%d' % sys.version_info[:2])")
    wheels = CACHE / f"wheels-py{version}"
    stamp = wheels / "requirements.txt"
    wanted = "\n".join(_requirements())
    if not (stamp.exists() and stamp.read_text() == wanted):
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                                 "--disable-pip-version-check", "--only-binary=:all:",
                                 "--python-version", version, "--dest", str(wheels),
                                 *_requirements()],
                                capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        stamp.write_text(wanted)
    return wheels


class PackageMirror:
    """A PEP 503 "simple" index of a wheel directory on loopback; it records what it served."""

    def __init__(self, wheels: Path, root: Path) -> None:
        for wheel in wheels.glob("*.whl"):
            project = parse_wheel_filename(wheel.name)[0]
            (root / "simple" / project).mkdir(parents=True, exist_ok=True)
            (root / "simple" / project / wheel.name).symlink_to(wheel)
        self.served: list[str] = []
        served = self.served

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                served.append(self.path)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler,
                                                                     directory=str(root)))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def index_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/simple/"

    def __enter__(self) -> PackageMirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the build -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltImage:
    buildah: Buildah
    base: str
    config: dict[str, Any]
    size: str  # as buildah reports it, e.g. "218 MB"
    build_seconds: float
    mirror_served: list[str]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    buildah = _usable_buildah()
    CACHE.mkdir(parents=True, exist_ok=True)
    base = _debian_base(buildah)
    wheels = _wheelhouse(buildah, base)
    with PackageMirror(wheels, tmp_path_factory.mktemp("mirror")) as mirror:
        started = time.monotonic()
        buildah("bud", "--isolation", "chroot", "--network", "host",
                "--build-arg", f"PYTHON_IMAGE={base}",
                "--build-arg", f"PIP_INDEX_URL={mirror.index_url}",
                "--tag", IMAGE, str(REPO_ROOT), timeout=1200)
        build_seconds = time.monotonic() - started
    inspected = json.loads(buildah("inspect", "--type", "image", IMAGE))
    (listed,) = json.loads(buildah("images", "--json", IMAGE))
    built = BuiltImage(buildah, base, inspected["OCIv1"]["config"], listed["size"],
                       build_seconds, mirror.served)
    print(f"\nimage {IMAGE}: {built.size}, built in {build_seconds:.1f}s")
    try:
        yield built
    finally:
        subprocess.run(buildah.command("rm", "--all"), capture_output=True, timeout=300,
                       check=False)
        subprocess.run(buildah.command("rmi", IMAGE), capture_output=True, timeout=300,
                       check=False)
        subprocess.run(buildah.command("rmi", "--prune"), capture_output=True, timeout=300,
                       check=False)



def test_the_build_fetched_its_packages_from_the_given_index(image: BuiltImage) -> None:
    fetched = {path.split("/")[2] for path in image.mirror_served if path.startswith("/simple/")}
    wanted = {canonicalize_name(Requirement(r).name) for r in _requirements()}
    assert wanted <= fetched, f"not fetched from PIP_INDEX_URL: {sorted(wanted - fetched)}"


def test_image_configuration(image: BuiltImage) -> None:
    import exporter

    config = image.config
    assert config["Entrypoint"] == ["scenario-exporter"], "the package's console script"
    assert list(pyproject()["project"]["scripts"]) == ["scenario-exporter"]
    assert not config.get("Cmd"), "flags belong to the user (docker run IMAGE --demo)"
    from exporter.config.settings import Settings

    port = Settings.model_fields["listen_address"].default.rpartition(":")[2]
    assert set(config["ExposedPorts"]) == {f"{port}/tcp"}
    assert config["User"] == f"{UID}:{UID}", "numeric, so that runAsNonRoot can verify it"
    values = yaml.safe_load((REPO_ROOT / "helm/scenario-exporter/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == UID
    assert values["podSecurityContext"]["runAsGroup"] == UID
    assert set(config["Volumes"]) == {"/tmp"}
    env = dict(item.partition("=")[::2] for item in config["Env"])
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.licenses"] == pyproject()["project"]["license"]["text"]
    assert labels["org.opencontainers.image.version"] == exporter.__version__
    for key in ("title", "description", "revision", "created", "source"):
        assert f"org.opencontainers.image.{key}" in labels


class Container:
    """A working container of an image, its root filesystem mounted for inspection."""

    def __init__(self, buildah: Buildah, image: str) -> None:
        self.buildah = buildah
        self.name = buildah("from", image)
        self.root = Path(buildah("mount", self.name))

    def run_command(self, *command: str) -> list[str]:
        return self.buildah.command("run", "--isolation", "chroot", "--network", "host",
                                    self.name, "--", *command)

    def snapshot(self, skip: tuple[str, ...] = ("tmp", "proc", "sys", "dev", "run")
                 ) -> dict[str, tuple[int, int, int]]:
        """(mode, size, mtime) of every path of the root filesystem outside *skip*.

        /proc, /sys, /dev and /run are the runtime's (buildah makes and removes
        mount points in /run, as every runtime mounts a tmpfs there).
        """
        found: dict[str, tuple[int, int, int]] = {}
        for top, dirs, files in os.walk(self.root):
            relative = os.path.relpath(top, self.root)
            if relative == ".":
                dirs[:] = [d for d in dirs if d not in skip]
            for name in (*dirs, *files):
                path = os.path.join(top, name)
                st = os.lstat(path)
                found[os.path.relpath(path, self.root)] = (st.st_mode, st.st_size,
                                                           st.st_mtime_ns)
        return found

    def remove(self) -> None:
        subprocess.run(self.buildah.command("rm", self.name), capture_output=True, timeout=300,
                       check=False)


@pytest.fixture
def container(image: BuiltImage) -> Iterator[Container]:
    made = Container(image.buildah, IMAGE)
    try:
        yield made
    finally:
        made.remove()


def test_the_image_is_lean(container: Container) -> None:
    venv = container.root / "opt" / "venv"
    assert not list((venv / "bin").glob("pip*")), "pip stays in the build stage"
    assert not (container.root / "src").exists() and not (container.root / "wheels").exists()
    (package,) = venv.glob("lib/python3*/site-packages/exporter")
    compiled = {p.name.split(".")[0] for p in (package / "__pycache__").glob("*.pyc")}
    assert {p.stem for p in package.glob("*.py")} <= compiled, "bytecode compiled at build time"


def _descendants(pid: int) -> list[int]:
    """Every process below *pid* (buildah run -> chroot runtime -> the command)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _uids(pid: int) -> tuple[str, str]:
    status = Path(f"/proc/{pid}/status").read_text()
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
    gid = re.search(r"^Gid:\s+(\d+)", status, re.M)
    assert uid and gid
    return uid.group(1), gid.group(1)


def test_the_image_serves_the_demo_as_10001_writing_nothing_outside_tmp(
        container: Container) -> None:
    before = container.snapshot()
    exporter = ExporterProcess(["--demo", "--web.listen-address", "127.0.0.1:0"],
                               clean_environment(),
                               command=container.run_command("scenario-exporter"))
    try:
        wait_for(lambda: exporter.metrics().value("scenario_up", account="demo") == 1, 60,
                 "the demo account's data", lambda: "\n".join(exporter.stderr_lines[-10:]))
        scraped = exporter.metrics()
        assert sum(scraped.by_label("scenario_model_cost_creative_units_total", "model_id",
                                    account="demo").values()) > 0
        served = [pid for pid in _descendants(exporter.proc.pid)
                  if b"scenario-exporter" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert served and {_uids(pid) for pid in served} == {(str(UID), str(UID))}
        exporter.terminate(30)
    finally:
        exporter.stop()
    after = container.snapshot()
    changed = sorted(path for path in before.keys() | after.keys()
                     if before.get(path) != after.get(path))
    assert not changed, f"the running image wrote outside /tmp: {changed[:20]}"


def test_the_build_context_is_the_package_only(image: BuiltImage) -> None:
    """What .dockerignore lets through, as buildah itself reads it."""
    probe = Container(image.buildah, image.base)
    try:
        image.buildah("copy", "--contextdir", str(REPO_ROOT), "--ignorefile",
                      str(REPO_ROOT / ".dockerignore"), probe.name, str(REPO_ROOT) + "/",
                      "/context/")
        context = probe.root / "context"
        files = sorted(str(p.relative_to(context)) for p in context.rglob("*") if p.is_file())
    finally:
        probe.remove()
    assert {"pyproject.toml", "README.md", "LICENSE", "exporter/__init__.py"} <= set(files)
    for path in files:
        assert path in {"pyproject.toml", "README.md", "LICENSE"} or path.startswith(
            "exporter/"), f"{path} should not be in the build context"
        assert "__pycache__" not in path
