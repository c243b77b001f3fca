"""An emulated aarch64 "board" for the tests: a Debian arm64 root run through qemu-user, with the device extras
installed from aarch64 wheels, edgetl installed from this checkout (no TensorFlow), and an OpenSSH server on a
loopback port with throw-away keys.

    python tests/arm/board.py prepare    # once per machine (root): about 5-10 minutes, cached outside the repo
    python tests/arm/board.py status     # ready, or why this machine cannot have the board

The cache lives in $EDGETL_BOARD_CACHE (default /var/cache/edgetl-arm-board); delete it to rebuild.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGETL_BOARD_CACHE", "/var/cache/edgetl-arm-board"))
ROOTFS = CACHE / "rootfs"
WHEELS = CACHE / "wheels"
READY = CACHE / "ready"
# Bump when what `prepare` puts in the root changes, so cached boards are rebuilt.
BOARD_VERSION = "1"
SUITE = "bookworm"  # Debian 12: python3 is 3.11, like the host
MIRROR = "http://deb.debian.org/debian"
PACKAGES = CACHE / "packages"  # the packages installed in the board's venv, one per line
WHEEL_PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in (17, 27, 28)] + ["manylinux2014_aarch64"]
VENV = "/opt/edgetl"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU = Path("/usr/bin/qemu-aarch64-static")


def log(message: str) -> None:
    print(f"[arm-board] {message}", file=sys.stderr, flush=True)


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, **kwargs)


def native() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64")


def why_not_possible() -> str | None:
    """None when this machine can run the board (or prepare it), else the reason."""
    if sys.platform != "linux":
        return f"the emulated board needs Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return "the emulated board needs root (chroot, mounts, binfmt_misc)"
    if native():
        return None
    if not shutil.which("apt-get") and not (QEMU.exists() and shutil.which("debootstrap")):
        return "qemu-user-static and debootstrap are missing and there is no apt-get to install them"
    return None


def ensure_host_tools() -> None:
    missing = [
        package
        for package, tool in (("qemu-user-static", str(QEMU)), ("debootstrap", "debootstrap"))
        if not (Path(tool).exists() or shutil.which(tool))
    ]
    if native():
        missing = [p for p in missing if p != "qemu-user-static"]
    if missing:
        log(f"installing {' '.join(missing)} from Debian's packages")
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", *missing, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def ensure_binfmt() -> None:
    """aarch64 ELF files run through qemu; the F flag opens the interpreter now, so it works inside the chroot."""
    if native():
        return
    if not (BINFMT / "register").exists():
        run("mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT))
    entry = BINFMT / "qemu-aarch64"
    if entry.exists():
        flags = entry.read_text()
        if "flags: F" in flags or "flags: OCF" in flags or ("F" in flags.split("flags:")[1].split()[0]):
            return
        entry.write_text("-1")  # registered without F: qemu would have to live inside the root; re-register
    magic = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
    mask = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
    (BINFMT / "register").write_text(f":qemu-aarch64:M::{magic}:{mask}:{QEMU}:F")


@dataclass
class Mounts:
    """/proc, /sys and /dev inside the root, for as long as the board runs."""

    root: Path
    mounted: list[Path]

    @classmethod
    def up(cls, root: Path) -> Mounts:
        mounts = cls(root, [])
        for source, kind in (("/proc", "proc"), ("/sys", "sysfs"), ("/dev", None)):
            target = root / source.lstrip("/")
            target.mkdir(exist_ok=True)
            if os.path.ismount(target):
                continue
            if kind:
                run("mount", "-t", kind, kind, str(target))
            else:
                run("mount", "--rbind", source, str(target))
                run("mount", "--make-rslave", str(target))
            mounts.mounted.append(target)
        if not native():
            # The host's CPU description (x86) under /sys crashes onnxruntime's cpuinfo under qemu (SIGSEGV);
            # hidden, cpuinfo says it failed and onnxruntime carries on, as on a board without that sysfs part.
            cpus = root / "sys" / "devices" / "system" / "cpu"
            run("mount", "-t", "tmpfs", "-o", "ro,size=4k", "none", str(cpus))
            mounts.mounted.append(cpus)
        return mounts

    def down(self) -> None:
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-R", str(target)], check=False)
            if os.path.ismount(target):
                subprocess.run(["umount", "-l", "-R", str(target)], check=False)
        self.mounted.clear()


def chroot(*command: str, **kwargs) -> subprocess.CompletedProcess:
    env = {"PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8"}
    return subprocess.run(["chroot", str(ROOTFS), *command], env=env, **kwargs)


def build_rootfs() -> None:
    staging = CACHE / "rootfs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    log(f"debootstrap {SUITE} arm64 into {staging} (a few minutes)")
    run(
        "debootstrap",
        "--arch=arm64",
        "--variant=minbase",
        "--include=python3,python3-venv,python3-pip,openssh-server",
        SUITE,
        str(staging),
        MIRROR,
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(ROOTFS, ignore_errors=True)
    staging.rename(ROOTFS)


def device_packages() -> list[str]:
    """What a board needs to run edgetl: its core dependencies and the `device` extra, as pyproject.toml says."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return sorted({*project["dependencies"], *project["optional-dependencies"]["device"]})


def packages_current() -> bool:
    return PACKAGES.is_file() and PACKAGES.read_text().split("\n") == device_packages()


def download_wheels() -> None:
    WHEELS.mkdir(parents=True, exist_ok=True)
    platforms = [argument for name in WHEEL_PLATFORMS for argument in ("--platform", name)]
    log("downloading aarch64 wheels of the device extras")
    run(
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        *platforms,
        "-d",
        str(WHEELS),
        *device_packages(),
    )


def build_edgetl_wheel(into: Path) -> Path:
    for old in into.glob("edgetl-*.whl"):
        old.unlink()
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(into), str(REPO))
    return next(into.glob("edgetl-*.whl"))


def install_device_extras() -> None:
    shutil.rmtree(ROOTFS / "opt" / "wheels", ignore_errors=True)
    shutil.copytree(WHEELS, ROOTFS / "opt" / "wheels")
    log("installing the device extras into the board's venv (under emulation)")
    mounts = Mounts.up(ROOTFS)
    try:
        chroot("/usr/bin/python3", "-m", "venv", VENV, check=True)
        chroot(
            f"{VENV}/bin/pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            "/opt/wheels",
            *device_packages(),
            check=True,
        )
    finally:
        mounts.down()
    PACKAGES.write_text("\n".join(device_packages()))


def prepare() -> None:
    reason = why_not_possible()
    if reason:
        raise SystemExit(f"cannot prepare the ARM board here: {reason}")
    if READY.is_file() and READY.read_text().strip() == BOARD_VERSION and (ROOTFS / VENV.lstrip("/")).is_dir():
        if not packages_current():  # edgetl's dependencies changed: the board gets them, its system stays
            download_wheels()
            install_device_extras()
        log(f"board ready in {CACHE}")
        return
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    READY.unlink(missing_ok=True)
    ensure_host_tools()
    ensure_binfmt()
    build_rootfs()
    download_wheels()
    install_device_extras()
    READY.write_text(BOARD_VERSION + "\n")
    log(f"board prepared in {time.monotonic() - started:.0f} s")


def is_ready() -> bool:
    return READY.is_file() and READY.read_text().strip() == BOARD_VERSION and packages_current()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Board:
    """A started board: mounts up, edgetl of this checkout installed, sshd listening on 127.0.0.1:port."""

    root: Path
    port: int
    user_key: Path
    known_hosts: Path
    mounts: Mounts
    sshd: subprocess.Popen

    @property
    def ssh_options(self) -> list[str]:
        return [
            "-p",
            str(self.port),
            "-i",
            str(self.user_key),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
        ]

    @property
    def target(self) -> str:
        return "root@127.0.0.1"

    def python(self, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run the board's python (the venv with the device extras) inside the root."""
        return chroot(f"{VENV}/bin/python", *arguments, capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        self.sshd.terminate()
        try:
            self.sshd.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.sshd.kill()
            self.sshd.wait()
        self.mounts.down()


def start(workdir: Path) -> Board:
    if not is_ready():
        raise RuntimeError(f"the ARM board is not prepared in {CACHE}: run `make arm-board`")
    ensure_binfmt()
    wheel = build_edgetl_wheel(workdir)
    shutil.copy(wheel, ROOTFS / "opt" / "wheels" / wheel.name)
    mounts = Mounts.up(ROOTFS)
    try:
        chroot(
            f"{VENV}/bin/pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--force-reinstall",
            f"/opt/wheels/{wheel.name}",
            check=True,
        )
        for name in ("host_key", "user_key"):
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / name))
        ssh_dir = ROOTFS / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.copy(workdir / "user_key.pub", ssh_dir / "authorized_keys")
        os.chmod(ssh_dir / "authorized_keys", 0o600)
        host_key = ROOTFS / "etc" / "ssh" / "edgetl_test_host_key"
        shutil.copy(workdir / "host_key", host_key)
        os.chmod(host_key, 0o600)
        (ROOTFS / "run" / "sshd").mkdir(parents=True, exist_ok=True)
        port = free_port()
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text(
            f"[127.0.0.1]:{port} {(workdir / 'host_key.pub').read_text().split(' ')[0]} "
            f"{(workdir / 'host_key.pub').read_text().split(' ')[1]}\n"
        )
        with open(workdir / "sshd.log", "wb") as sshd_log:
            sshd = subprocess.Popen(
                [
                    "chroot",
                    str(ROOTFS),
                    "/usr/sbin/sshd",
                    "-D",
                    "-e",
                    "-p",
                    str(port),
                    "-o",
                    "ListenAddress=127.0.0.1",
                    "-h",
                    "/etc/ssh/edgetl_test_host_key",
                    "-o",
                    "PasswordAuthentication=no",
                    "-o",
                    "KbdInteractiveAuthentication=no",
                    "-o",
                    "UsePAM=no",
                    "-o",
                    "PermitRootLogin=prohibit-password",
                    # Like a board where the device extras are installed: `python3` is the one that has them.
                    "-o",
                    f"SetEnv=PATH={VENV}/bin:/usr/local/bin:/usr/bin:/bin",
                ],
                stdout=subprocess.DEVNULL,
                stderr=sshd_log,
            )
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if sshd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(workdir / 'sshd.log').read_text()[-500:]}")
            time.sleep(0.2)
    except BaseException:
        mounts.down()
        raise
    return Board(ROOTFS, port, workdir / "user_key", known_hosts, mounts, sshd)


def start_or_skip(workdir: Path) -> Board:
    """The board started in `workdir` for a test, or the test skipped saying why this machine cannot run it."""
    import pytest

    reason = why_not_possible()
    if reason:
        pytest.skip(f"no emulated ARM board: {reason}")
    if not is_ready():
        pytest.skip(f"no emulated ARM board: not prepared in {CACHE} (run `make arm-board`)")
    return start(workdir)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "prepare":
        prepare()
    elif command == "prepare-if-possible":
        reason = why_not_possible()
        if reason:
            log(f"skipping the ARM board: {reason}")
        else:
            prepare()
    elif command == "status":
        reason = why_not_possible()
        print("ready" if is_ready() else f"not prepared ({reason or 'run make arm-board'})")
    elif command == "smoke":
        with tempfile.TemporaryDirectory() as workdir:
            board = start(Path(workdir))
            try:
                result = board.python(
                    "-c",
                    "import platform, numpy, ai_edge_litert, onnxruntime, edgetl; "
                    "print(platform.machine(), numpy.__version__)",
                )
                print(result.stdout or result.stderr)
            finally:
                board.stop()
    else:
        raise SystemExit(f"usage: {sys.argv[0]} prepare|prepare-if-possible|status|smoke")


if __name__ == "__main__":
    main()
