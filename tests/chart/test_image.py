"""The image recipe (Dockerfile, .dockerignore) checked without a container engine.

What can really break an image build or run here: the lock out of date with pyproject.toml
(`--locked` then fails the build), a build input missing from the context, a dependency with no
wheel for the image's Python (the slim base has no compiler), dev tools leaking in, the scheduler
and worker commands missing, or a user the chart's runAsNonRoot cannot verify. The builder stage's
uv commands are run for real (offline, from uv's cache) into a temporary environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.chart.dockerfile import Dockerfile, copy_sources, dockerignore_excludes

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = Dockerfile.parse((ROOT / "Dockerfile").read_text())
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
CHART_VALUES = yaml.safe_load((ROOT / "charts/portfolio-operator/values.yaml").read_text())

BUILDER = DOCKERFILE.stage("builder")
RUNTIME = DOCKERFILE.stages[-1]


def uv_runs(stage) -> list[str]:
    return [i.arguments for i in stage.of("RUN") if i.arguments.startswith("uv ")]


def default_base_python() -> Version:
    base = DOCKERFILE.global_args["BASE_IMAGE"]
    match = re.search(r"python:(\d+\.\d+)", base)
    assert match, f"default BASE_IMAGE {base!r} should name its Python version (python:3.X-...)"
    return Version(match.group(1))


def locked_runtime_requirements() -> dict[str, str]:
    """name -> version that `uv export --locked --no-dev --extra operator` pins for this
    platform and Python: what the image installs."""
    export = subprocess.run(
        [
            "uv",
            "export",
            "--locked",
            "--no-dev",
            "--extra",
            "operator",
            "--no-hashes",
            "--no-emit-project",
            "--offline",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert export.returncode == 0, f"uv.lock does not match pyproject.toml:\n{export.stderr}"
    environment = default_environment()
    pins: dict[str, str] = {}
    for line in export.stdout.splitlines():
        if not line or line.startswith(("#", " ", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            (version,) = [spec.version for spec in requirement.specifier]
            pins[canonicalize_name(requirement.name)] = version
    return pins


def test_every_stage_starts_from_the_base_image_argument() -> None:
    # The virtualenv copied between stages links to the base's python3: both stages must match.
    assert DOCKERFILE.global_args.get("BASE_IMAGE"), "declare ARG BASE_IMAGE=... before FROM"
    assert [stage.base for stage in DOCKERFILE.stages] == ["${BASE_IMAGE}"] * len(DOCKERFILE.stages)
    assert len(DOCKERFILE.stages) >= 2, "multi-stage: build tools stay in the builder stage"
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert default_base_python() in requires, (
        f"default base image Python {default_base_python()} is outside requires-python {requires}"
    )


def test_dependencies_come_from_the_lock_file_without_dev_tools() -> None:
    runs = uv_runs(BUILDER)
    assert runs, "the builder stage should install with `uv sync`"
    for command in runs:
        argv = shlex.split(command)
        assert argv[:2] == ["uv", "sync"], command
        assert {"--locked", "--frozen"} & set(argv), f"{command!r} must install from uv.lock as is"
        assert "--no-dev" in argv, f"{command!r} would install the dev group (pytest, ta-lib)"
        extras = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--extra"]
        assert "operator" in extras, (
            f"{command!r} must install the operator extra (kopf, kubernetes, dask-kubernetes)"
        )
    # The lock (and the pyproject it is checked against) are in place before the first sync.
    first_sync = BUILDER.instructions.index(
        next(i for i in BUILDER.of("RUN") if i.arguments.startswith("uv sync"))
    )
    copied_before = {
        Path(source).name
        for instruction in BUILDER.instructions[:first_sync]
        if instruction.keyword == "COPY"
        for source in copy_sources(instruction)
    }
    assert {"uv.lock", "pyproject.toml"} <= copied_before
    assert re.fullmatch(r"\d+\.\d+\.\d+", BUILDER.env().get("UV_VERSION", "") or _arg(BUILDER)), (
        "pin uv to an exact version (ARG UV_VERSION=X.Y.Z) so builds are reproducible"
    )


def _arg(stage) -> str:
    for instruction in stage.of("ARG"):
        key, _, value = instruction.arguments.partition("=")
        if key == "UV_VERSION":
            return value
    return ""


def test_runtime_runs_as_the_numeric_non_root_user_the_chart_expects() -> None:
    users = RUNTIME.of("USER")
    assert users, "the final stage must switch to a non-root USER"
    uid, _, gid = users[-1].arguments.partition(":")
    # Kubernetes can only verify runAsNonRoot for a numeric user.
    assert uid.isdigit() and int(uid) != 0 and int(uid) >= 10000
    assert int(uid) == CHART_VALUES["podSecurityContext"]["runAsUser"]
    assert gid and int(gid) == CHART_VALUES["podSecurityContext"]["runAsGroup"]
    assert not RUNTIME.of("HEALTHCHECK"), "Kubernetes probes do the health checking"
    assert not RUNTIME.of("ENTRYPOINT"), (
        "no ENTRYPOINT: DaskCluster pods replace the command with `dask scheduler`/`dask worker`"
    )
    labels = " ".join(i.arguments for i in RUNTIME.of("LABEL"))
    for key in ("title", "description", "licenses", "version", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_build_context_holds_every_copied_path_and_not_the_host_environment() -> None:
    sources = [s for st in DOCKERFILE.stages for i in st.of("COPY") for s in copy_sources(i)]
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignore_excludes(DOCKERIGNORE, source), f".dockerignore drops {source}"
    # hatchling reads the readme named in pyproject.toml while building the project wheel.
    assert PYPROJECT["project"]["readme"] in sources
    for package in PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert any(package == s or package.startswith(s.rstrip("/") + "/") for s in sources)
    for private in (
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "analysis/x/__pycache__/m.pyc",
    ):
        assert dockerignore_excludes(DOCKERIGNORE, private), f"{private} would enter the image"


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_every_locked_runtime_dependency_has_a_wheel_for_the_image(arch: str) -> None:
    # The slim base has no compiler: a dependency that only ships an sdist with C code
    # (ta-lib, say) would fail `uv sync` in the image. Debian bookworm has glibc 2.36.
    python = default_base_python()
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)]
    platforms += ["manylinux2014_" + arch, "linux_" + arch]
    if arch == "x86_64":
        platforms += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    version = (python.major, python.minor)
    interpreter = f"cp{python.major}{python.minor}"
    supported = set(cpython_tags(version, platforms=platforms))
    supported |= set(compatible_tags(version, interpreter, platforms=platforms))

    python_env = default_environment() | {
        "python_version": f"{python.major}.{python.minor}",
        "python_full_version": f"{python.major}.{python.minor}.0",
        "platform_machine": arch,
        "sys_platform": "linux",
    }
    locked = {(canonicalize_name(p["name"]), p["version"]): p for p in LOCK["package"]}
    needed = locked_runtime_requirements()
    missing = []
    for name, version in needed.items():
        package = locked[(name, version)]
        tags = {
            tag
            for wheel in package.get("wheels", [])
            for tag in parse_wheel_filename(wheel["url"].rsplit("/", 1)[-1])[3]
        }
        if not tags & supported:
            missing.append(f"{name}=={version}")
    assert python_env["sys_platform"] == "linux"
    assert not missing, (
        f"no {arch} wheel for CPython {python} in uv.lock for: {', '.join(missing)}; the image "
        "cannot compile them: pick versions with wheels or add a compiler to the builder stage"
    )


@pytest.fixture(scope="module")
def built_environment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the builder stage's COPY and RUN steps in a temporary /app, offline."""
    app = tmp_path_factory.mktemp("app")
    workdir = BUILDER.workdir()
    assert workdir, "the builder stage should set a WORKDIR"
    for instruction in BUILDER.of("COPY"):
        for source in copy_sources(instruction):
            target = app / Path(source).name
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                shutil.copy2(ROOT / source, target)
    env = {
        k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    }
    env |= {key: value.replace(workdir, str(app)) for key, value in BUILDER.env().items()}
    # Same packages, faster here: no bytecode compilation, hard links from uv's cache. The
    # image's `python3` is played by this environment's interpreter, whose wheels the cache
    # holds (another local Python, e.g. Debian's, may need downloads an offline run cannot do).
    env |= {"UV_OFFLINE": "1", "UV_COMPILE_BYTECODE": "0", "UV_LINK_MODE": "hardlink",
            "UV_PYTHON": sys.executable}  # fmt: skip
    # Every RUN step of the builder, in order, but installing uv (this machine has it).
    for instruction in BUILDER.of("RUN"):
        command = instruction.arguments.replace(workdir, str(app))
        if "pip install" in command and "uv==" in command:
            continue
        result = subprocess.run(
            ["/bin/sh", "-c", command], cwd=app, env=env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"`{command}` failed:\n{result.stderr[-3000:]}"
    venv = Path(env["UV_PROJECT_ENVIRONMENT"])
    assert (venv / "bin" / "python").exists()
    return venv


# Runs inside the built environment once: what is installed, and whether the commands the
# chart and the DaskCluster pods start are there and answer.
PROBE = """
import contextlib, importlib, importlib.metadata as metadata, io, json, sys
import dask.__main__
report = {"installed": {d.metadata["Name"]: [d.version, d.read_text("direct_url.json")]
                        for d in metadata.distributions()}, "cli": {}, "imports": {}}
for command in ("scheduler", "worker"):
    sys.argv = ["dask", command, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            dask.__main__.main()
            code = 0
        except SystemExit as stop:
            code = stop.code or 0
    report["cli"][command] = [code, out.getvalue()[:200]]
for module in ("kopf", "portfolio_analysis", "portfolio_operator",
               "dask_kubernetes.operator.controller"):
    try:
        importlib.import_module(module)
        report["imports"][module] = "ok"
    except Exception as error:
        report["imports"][module] = repr(error)
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def probe(built_environment: Path) -> dict:
    result = subprocess.run(
        [str(built_environment / "bin" / "python"), "-c", PROBE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_builder_installs_exactly_the_locked_runtime_dependencies(probe: dict) -> None:
    installed = {canonicalize_name(k): v for k, v in probe["installed"].items()}
    project = installed.pop(canonicalize_name(PYPROJECT["project"]["name"]))
    assert project[0] == PYPROJECT["project"]["version"]
    direct_url = json.loads(project[1] or "{}")
    assert not direct_url.get("dir_info", {}).get("editable"), "the project must be a real install"
    assert {name: version for name, (version, _) in installed.items()} == (
        locked_runtime_requirements()
    )
    for dev_tool in PYPROJECT["dependency-groups"]["dev"]:
        assert canonicalize_name(Requirement(dev_tool).name) not in installed


def test_built_environment_runs_operator_scheduler_and_worker(
    built_environment: Path, probe: dict
) -> None:
    bin_dir = built_environment / "bin"
    for script in [*PYPROJECT["project"]["scripts"], "dask", "kopf"]:
        assert (bin_dir / script).exists(), f"console script {script} missing from the image"
    for command, (code, output) in probe["cli"].items():
        assert code == 0 and f"Usage: dask {command}" in output, (command, code, output)
    # The dask-kubernetes controller the chart's toggle starts runs from this image too.
    assert probe["imports"] == dict.fromkeys(probe["imports"], "ok")
    assert len(probe["imports"]) == 4


def test_dask_cluster_pods_commands_exist_in_the_image(built_environment: Path) -> None:
    # The DaskCluster the operator creates (through dask-kubernetes' make_cluster_spec) names
    # the scheduler and worker commands; with this image as the worker image they must run.
    from portfolio_operator.cluster import dask_cluster_manifest
    from portfolio_operator.constants import API_VERSION, KIND
    from portfolio_operator.spec import parse_spec

    owner = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "p", "namespace": "n", "uid": "0b8e6f5c-1111-2222-3333-444455556666"},
    }
    manifest = dask_cluster_manifest(owner, "p-dask", parse_spec({"tickers": ["AAPL"]}), "img")
    path = {"PATH": "/usr/bin:/bin"}  # not the venv: the pod's PATH is the image's, not ours
    for part, expected in (
        ("scheduler", "Usage: dask scheduler"),
        ("worker", "Usage: dask worker"),
    ):
        (container,) = manifest["spec"][part]["spec"]["containers"]
        argv = container.get("command") or container["args"]
        # `dask scheduler ...` (the console script) or `dask-scheduler ...` (the image's shim)
        argv = argv[:2] if argv[0] == "dask" else argv[:1]
        executable = built_environment / "bin" / argv[0]
        assert executable.exists(), f"DaskCluster {part} pods run {argv[0]!r}: not in the image"
        result = subprocess.run(
            [str(executable), *argv[1:], "--help"], env=path, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0 and expected in result.stdout, (argv, result.stderr[-2000:])


def test_image_labels_carry_the_project_version() -> None:
    defaults = dict(i.arguments.partition("=")[::2] for i in RUNTIME.of("ARG"))
    assert defaults["VERSION"] == PYPROJECT["project"]["version"]


# A new process of the image: does it load the indicator kernel the build compiled?
KERNEL_PROBE = """
import json
from portfolio_analysis import technicals
from portfolio_analysis.embedded import sample_histories
technicals.compute_indicators(technicals.build_panel(dict(sample_histories())))
stats = technicals._panel_indicators.stats
print(json.dumps({"hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def test_runtime_stage_compiles_the_indicator_kernel_that_new_workers_load(
    built_environment: Path, tmp_path: Path
) -> None:
    # The runtime stage compiles numba's kernel into NUMBA_CACHE_DIR for a generic CPU; a
    # Dask worker started later must load it, not spend ~1.5 s compiling it again.
    runtime_env = RUNTIME.env()
    assert runtime_env.get("NUMBA_CPU_NAME") == "generic", "cache must not depend on the CPU"
    cache_dir = runtime_env.get("NUMBA_CACHE_DIR")
    assert cache_dir, "the runtime stage should set NUMBA_CACHE_DIR"
    (compile_run,) = [i for i in RUNTIME.of("RUN") if "compile_kernels" in i.arguments]
    order = RUNTIME.instructions.index
    assert order(RUNTIME.of("USER")[-1]) < order(compile_run), (
        "compile as the runtime user, so its pods may add to the cache (another CPU, say)"
    )
    compile_step = compile_run.arguments
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env |= runtime_env | {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    env["PATH"] = f"{built_environment / 'bin'}:{os.environ['PATH']}"
    build = subprocess.run(
        ["/bin/sh", "-c", compile_step], env=env, capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert any((tmp_path / "numba-cache").rglob("*.nbc")), "nothing was cached"
    worker = subprocess.run(
        [str(built_environment / "bin" / "python"), "-c", KERNEL_PROBE],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert json.loads(worker.stdout.splitlines()[-1]) == {"hits": 1, "misses": 0}
