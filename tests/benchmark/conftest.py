"""A throw-away SSH server on 127.0.0.1 for the remote bench: its own host key, user key and known_hosts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def loopback_ssh(tmp_path_factory):
    """(user@host, ssh options) of an sshd that accepts only a key made for this test session."""
    missing = [tool for tool in ("ssh", "scp", "ssh-keygen") if shutil.which(tool) is None]
    if not SSHD.is_file() or missing:
        pytest.skip(
            f"no OpenSSH server here ({SSHD} or {', '.join(missing) or 'client'} missing): apt-get install "
            "openssh-server openssh-client, which `make test` does when it runs as root"
        )
    if os.geteuid() != 0:
        pytest.skip("the loopback sshd test logs in as root with its own authorized_keys; run the tests as root")
    folder = tmp_path_factory.mktemp("sshd")
    host_key, user_key = folder / "host_key", folder / "user_key"
    _keygen(host_key)
    _keygen(user_key)
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "user_key.pub").read_text())
    authorized.chmod(0o600)
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    known_hosts = folder / "known_hosts"
    host_public = (folder / "host_key.pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    options = (
        f"Port={port}",
        f"IdentityFile={user_key}",
        "IdentitiesOnly=yes",
        f"UserKnownHostsFile={known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if server.poll() is not None:
            pytest.skip(f"sshd did not start: {server.stderr.read().decode(errors='replace').strip()}")
        time.sleep(0.1)
    try:
        yield "root@127.0.0.1", options
    finally:
        server.terminate()
        server.wait(timeout=10)
