#!/usr/bin/env python3
"""Build the e2e cluster's container images here, where nothing can be pulled.

No registry is reachable and no image engine runs, so every image the single-node
cluster needs is made from local inputs and packed as an OCI image archive that
`ctr -n k8s.io images import` loads into containerd:

- ``base``: Debian bookworm (``debootstrap --variant=minbase``) with python3, pip, venv and
  ca-certificates; the host's CA bundle is copied in so pip reaches PyPI from a build.
- ``pause``: the pod sandbox image (containerd's ``sandbox_image``), a static C program.
- ``coredns``: CoreDNS from the Go module proxy, pinned in hack/kube-versions.env.
- ``product``: the project's ``Dockerfile`` built by buildah (daemonless, no iptables
  rules) with ``base`` as its base-image build argument.

Each archive is cached under ~/.cache/portfolio-operator/images/ and keyed by a hash of its
inputs (versions, package lists, sources, lock file), so a warm run rebuilds nothing. The
image reference's tag is that key, so a changed input gives a new tag and pods started
with ``imagePullPolicy: IfNotPresent`` never run a stale image.

Standard library only: it runs as root before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # for hack.kubelocal; appended, so nothing shadows the stdlib
from hack.kubelocal.binaries import (  # noqa: E402
    E2E_FOLDER_VARIABLES,
    cache_root,
    find_optional_binary,
    pinned_versions,
)

# The same cache root as hack/kube-binaries.sh (which honours XDG_CACHE_HOME).
CACHE = cache_root()
IMAGES = CACHE / "images"
BUILDAH_ROOT = IMAGES / "buildah"
# Bumped whenever this script changes how an image is made, so old cache entries are not reused.
RECIPE_VERSION = "1"

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("E2E_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_ENV = {
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
    "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    "UV_NATIVE_TLS": "true",
}
IMAGE_PREFIX = "localhost/portfolio-e2e"
PRODUCT_REPOSITORY = "localhost/portfolio-operator"
# Name of the Dockerfile's base-image ARG (issue 6's Dockerfile); overridable for other files.
BASE_IMAGE_ARG = os.environ.get("E2E_BASE_IMAGE_ARG", "BASE_IMAGE")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


class BuildError(RuntimeError):
    """A build step failed; the message says which and what to check."""


@dataclass(frozen=True)
class BuiltImage:
    """An image archive in the cache: its reference, file and how long it took to make."""

    name: str
    ref: str
    archive: Path
    seconds: float
    cached: bool

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "ref": self.ref,
            "archive": str(self.archive),
            "seconds": round(self.seconds, 1),
            "cached": self.cached,
        }


def log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str | Path], **kwargs) -> subprocess.CompletedProcess:
    """Run a command, turning a failure into a BuildError that names it."""
    cmd = [str(c) for c in cmd]
    try:
        return subprocess.run(cmd, check=True, **kwargs)
    except FileNotFoundError as exc:
        raise BuildError(
            f"{cmd[0]} is not installed (run hack/local-cluster/cluster.py deps)"
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise BuildError(
            f"command failed with exit code {exc.returncode}: {' '.join(cmd)}"
        ) from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_key(*parts: object) -> str:
    """A short, stable hash of a build's inputs, used as cache key and image tag."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tree_hash(paths: Iterable[Path], top: Path = REPO) -> str:
    """Hash of the files under the given paths (names and contents), skipping caches."""
    digest = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"}:
                continue
            digest.update(str(path.relative_to(top)).encode() + b"\0")
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


# --- OCI archive writing -------------------------------------------------------------------


def tar_layer(rootfs: Path, dest: Path) -> None:
    """Pack a directory as an uncompressed layer, keeping numeric owners, modes and xattrs."""
    entries = sorted(os.listdir(rootfs))
    if not entries:
        raise BuildError(f"{rootfs} is empty: nothing to pack")
    run(
        [
            "tar",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--sort=name",
            "-C",
            rootfs,
            "-cf",
            dest,
            *entries,
        ]
    )


def write_oci_archive(dest: Path, ref: str, layer: Path, image_config: dict[str, object]) -> None:
    """Write a one-layer image as an OCI image-layout tar that `ctr images import` accepts.

    The index names the image twice: `io.containerd.image.name` (the full reference
    containerd uses) and `org.opencontainers.image.ref.name` (the tag, for other tools).
    """
    layer_digest = sha256_file(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created_by": f"hack/images/images.py recipe {RECIPE_VERSION}"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": f"sha256:{config_digest}",
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": OCI_LAYER,
                "digest": f"sha256:{layer_digest}",
                "size": layer.stat().st_size,
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                },
            }
        ],
    }
    partial = dest.with_suffix(".partial")
    with tarfile.open(partial, "w") as archive:
        _add_bytes(archive, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add_bytes(archive, "index.json", json.dumps(index).encode())
        _add_bytes(archive, f"blobs/sha256/{config_digest}", config_bytes)
        _add_bytes(archive, f"blobs/sha256/{manifest_digest}", manifest_bytes)
        archive.add(layer, arcname=f"blobs/sha256/{layer_digest}")
    partial.rename(dest)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))


def _cached(name: str, ref: str, archive: Path) -> BuiltImage | None:
    if archive.exists():
        log(f"{name}: cached {archive.name}")
        return BuiltImage(name, ref, archive, 0.0, cached=True)
    return None


# --- the images ------------------------------------------------------------------------------


def base_ref() -> str:
    ca = sha256_file(HOST_CA_BUNDLE) if HOST_CA_BUNDLE.exists() else "none"
    key = input_key(RECIPE_VERSION, DEBIAN_SUITE, DEBIAN_MIRROR, BASE_PACKAGES, CA_ENV, ca)
    return f"{IMAGE_PREFIX}/base:{DEBIAN_SUITE}-{key}"


def build_base() -> BuiltImage:
    """debootstrap a minimal bookworm with Python, clean it and pack it as an image."""
    ref = base_ref()
    archive = IMAGES / f"base-{ref.rsplit(':', 1)[1]}.oci.tar"
    if cached := _cached("base", ref, archive):
        return cached
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=IMAGES, prefix="base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"base: debootstrap {DEBIAN_SUITE} from {DEBIAN_MIRROR} (about 2 minutes)")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                DEBIAN_SUITE,
                rootfs,
                DEBIAN_MIRROR,
            ],
            stdout=subprocess.DEVNULL,
        )
        # Drop what a container never needs: package caches, device nodes (the runtime
        # mounts its own /dev), logs.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log", "dev", "tmp"):
            target = rootfs / sub
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
        (rootfs / "tmp").chmod(0o1777)
        if HOST_CA_BUNDLE.exists():
            shutil.copy2(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        (rootfs / "etc/resolv.conf").write_text("")
        (rootfs / "etc/hostname").write_text("")
        layer = Path(tmp) / "layer.tar"
        tar_layer(rootfs, layer)
        env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
        env += [f"{key}={value}" for key, value in CA_ENV.items()]
        write_oci_archive(archive, ref, layer, {"Env": env, "Cmd": ["/bin/bash"]})
    seconds = time.monotonic() - started
    log(f"base: built {archive.name} in {seconds:.0f} s")
    return BuiltImage("base", ref, archive, seconds, cached=False)


def pause_ref() -> str:
    source = HERE / "pause" / "pause.c"
    return f"{IMAGE_PREFIX}/pause:{input_key(RECIPE_VERSION, sha256_file(source))}"


def build_pause() -> BuiltImage:
    """Compile pause.c statically into a one-file image."""
    ref = pause_ref()
    archive = IMAGES / f"pause-{ref.rsplit(':', 1)[1]}.oci.tar"
    if cached := _cached("pause", ref, archive):
        return cached
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=IMAGES, prefix="pause-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        run(["gcc", "-static", "-Os", "-Wall", "-o", rootfs / "pause", HERE / "pause" / "pause.c"])
        run(["strip", rootfs / "pause"])
        layer = Path(tmp) / "layer.tar"
        tar_layer(rootfs, layer)
        write_oci_archive(archive, ref, layer, {"Entrypoint": ["/pause"], "User": "65535:65535"})
    seconds = time.monotonic() - started
    log(f"pause: built {archive.name} in {seconds:.1f} s")
    return BuiltImage("pause", ref, archive, seconds, cached=False)


def coredns_binary(version: str) -> Path:
    """CoreDNS built from the Go module proxy, reusing hack/kube-binaries.sh's if it made one."""
    built = find_optional_binary("coredns", folder_variables=E2E_FOLDER_VARIABLES)
    if built is not None:
        return built
    gobin = IMAGES / f"coredns-{version}" / "bin"
    binary = gobin / "coredns"
    if binary.exists():
        return binary
    log(f"coredns: go install github.com/coredns/coredns@{version} (several minutes on 2 cores)")
    env = dict(os.environ, GOBIN=str(gobin), CGO_ENABLED="0", GOFLAGS="-trimpath")
    run(["go", "install", "-ldflags=-s -w", f"github.com/coredns/coredns@{version}"], env=env)
    return binary


def coredns_ref() -> str:
    version = pinned_versions()["COREDNS_VERSION"]
    return f"{IMAGE_PREFIX}/coredns:{version}-{input_key(RECIPE_VERSION, version)[:8]}"


def build_coredns() -> BuiltImage:
    version = pinned_versions()["COREDNS_VERSION"]
    ref = coredns_ref()
    archive = IMAGES / f"coredns-{version}.oci.tar"
    if cached := _cached("coredns", ref, archive):
        return cached
    started = time.monotonic()
    binary = coredns_binary(version)
    with tempfile.TemporaryDirectory(dir=IMAGES, prefix="coredns-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        shutil.copy2(binary, rootfs / "coredns")
        layer = Path(tmp) / "layer.tar"
        tar_layer(rootfs, layer)
        write_oci_archive(archive, ref, layer, {"Entrypoint": ["/coredns"]})
    seconds = time.monotonic() - started
    log(f"coredns: built {archive.name} in {seconds:.0f} s")
    return BuiltImage("coredns", ref, archive, seconds, cached=False)


PRODUCT_FILES = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "uv.lock",
    "README.md",
    "analysis",
    "operator",
)


def product_context() -> Path:
    """The build context: the working tree, or with E2E_PRODUCT_SOURCE=<git revision> (e.g.
    HEAD) that commit's files, so that others' uncommitted edits in a shared tree neither
    change the image under test nor force a rebuild."""
    revision = os.environ.get("E2E_PRODUCT_SOURCE", "")
    if not revision:
        return REPO
    commit = run(
        ["git", "-C", REPO, "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    context = IMAGES / "contexts" / commit
    if not context.exists():
        partial = context.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        listed = run(
            ["git", "-C", REPO, "ls-tree", "--name-only", commit, *PRODUCT_FILES],
            capture_output=True,
            text=True,
        ).stdout.split()
        archive = run(["git", "-C", REPO, "archive", commit, *listed], capture_output=True)
        run(["tar", "-x", "-C", partial], input=archive.stdout)
        partial.rename(context)
        for old in context.parent.iterdir():
            if old != context:
                shutil.rmtree(old, ignore_errors=True)
    return context


def product_inputs(context: Path) -> list[Path]:
    return [context / name for name in PRODUCT_FILES if (context / name).exists()]


def product_ref(context: Path | None = None) -> str:
    context = context or product_context()
    key = input_key(RECIPE_VERSION, base_ref(), tree_hash(product_inputs(context), context))
    return f"{PRODUCT_REPOSITORY}:{key}"


def buildah(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    """buildah with its own storage under the cache, never the host's default."""
    storage = [
        "--root",
        BUILDAH_ROOT / "root",
        "--runroot",
        BUILDAH_ROOT / "run",
        "--storage-driver",
        os.environ.get("E2E_BUILDAH_DRIVER", "overlay"),
    ]
    if "capture_output" not in kwargs:
        # Build output is progress, not a result: keep stdout for the JSON this script prints.
        kwargs.setdefault("stdout", sys.stderr)
    return run(["buildah", *storage, *args], **kwargs)


def build_product(base: BuiltImage) -> BuiltImage:
    """Build the project's Dockerfile with buildah on top of the local base image."""
    context = product_context()
    dockerfile = context / "Dockerfile"
    if not dockerfile.exists():
        raise BuildError(f"{dockerfile} does not exist")
    ref = product_ref(context)
    archive = IMAGES / f"product-{ref.rsplit(':', 1)[1]}.docker.tar"
    if cached := _cached("product", ref, archive):
        return cached
    started = time.monotonic()
    BUILDAH_ROOT.mkdir(parents=True, exist_ok=True)
    images = buildah("images", "--format", "{{.Name}}:{{.Tag}}", capture_output=True, text=True)
    if base.ref not in images.stdout.split():
        image_id = buildah(
            "pull", "--quiet", f"oci-archive:{base.archive}", capture_output=True, text=True
        ).stdout.strip()
        buildah("tag", image_id, base.ref)
    log(f"product: buildah bud {dockerfile} with {BASE_IMAGE_ARG}={base.ref}")
    buildah(
        "bud",
        "--layers",
        "--pull-never",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--build-arg",
        f"{BASE_IMAGE_ARG}={base.ref}",
        "-t",
        ref,
        "-f",
        dockerfile,
        context,
    )
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    buildah("push", ref, f"docker-archive:{partial}:{ref}")
    partial.rename(archive)
    prune_products(keep=ref)
    seconds = time.monotonic() - started
    log(f"product: built {archive.name} in {seconds:.0f} s")
    return BuiltImage("product", ref, archive, seconds, cached=False)


def prune_products(keep: str) -> None:
    """Drop older product archives and tags: each archive is over 1 GB and a changed source
    makes a new one, so without this the cache grows by a gigabyte per edit."""
    tag = keep.rsplit(":", 1)[1]
    for old in IMAGES.glob("product-*.docker.tar"):
        if old.name != f"product-{tag}.docker.tar":
            old.unlink(missing_ok=True)
            log(f"product: removed old archive {old.name}")
    listing = buildah("images", "--format", "{{.Name}}:{{.Tag}}", capture_output=True, text=True)
    for name in listing.stdout.split():
        if name.startswith(f"{PRODUCT_REPOSITORY}:") and name != keep:
            buildah("rmi", name, stdout=subprocess.DEVNULL)
    # Unnamed intermediate layers are kept on purpose: they are buildah's layer cache (the
    # dependency layer keyed by uv.lock). `images.py prune` drops them.


BUILDERS = ("base", "pause", "coredns", "product")


def build(names: Sequence[str]) -> list[BuiltImage]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    built: dict[str, BuiltImage] = {}
    for name in names:
        if name == "base":
            built[name] = build_base()
        elif name == "pause":
            built[name] = build_pause()
        elif name == "coredns":
            built[name] = build_coredns()
        elif name == "product":
            built[name] = build_product(built.get("base") or build_base())
    return list(built.values())


def import_images(images: Sequence[BuiltImage], address: str) -> None:
    """Load archives into containerd's CRI namespace, skipping images it already holds."""
    present = run(
        ["ctr", "--address", address, "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
    ).stdout.split()
    for image in images:
        if image.ref in present:
            log(f"import: {image.ref} already in containerd")
            continue
        started = time.monotonic()
        run(
            ["ctr", "--address", address, "-n", "k8s.io", "images", "import", image.archive],
            stdout=subprocess.DEVNULL,
        )
        log(f"import: {image.ref} in {time.monotonic() - started:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "build": "build the named images (default: base pause coredns) into the cache",
        "import": "build, then import into containerd's k8s.io namespace",
        "refs": "print the image references the named images get, as JSON",
    }
    for command, text in helps.items():
        p = sub.add_parser(command, help=text)
        p.add_argument("names", nargs="*", metavar="NAME", help=" | ".join(BUILDERS))
        if command == "import":
            p.add_argument("--address", required=True, help="containerd socket")
    args = parser.parse_args(argv)
    names = args.names or list(BUILDERS[:3])
    if unknown := sorted(set(names) - set(BUILDERS)):
        parser.error(f"unknown image {unknown}; choose from {', '.join(BUILDERS)}")
    try:
        if args.command == "refs":
            refs = {
                "base": base_ref,
                "pause": pause_ref,
                "coredns": coredns_ref,
                "product": product_ref,
            }
            print(json.dumps({name: refs[name]() for name in names}, indent=2))
            return 0
        images = build(names)
        if args.command == "import":
            import_images(images, args.address)
        print(json.dumps([image.as_json() for image in images], indent=2))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
