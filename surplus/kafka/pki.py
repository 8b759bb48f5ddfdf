"""The secure local broker's throw-away test CA and certificates (openssl + keytool). I/O (files).

`ensure_pki(dir, ...)` makes, once, a CA (`ca.pem`), the broker's keystore (`broker.p12`, CN=broker)
and a truststore holding the CA; `issue_cert(dir, name)` signs a client certificate whose CN is
the Kafka principal `name`. For tests and local runs only: never a production CA.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from surplus.errors import UserError

CERT_DAYS = 825
STORE_PASSWORD_ENV = "SURPLUS_KEYSTORE_PASSWORD"  # noqa: S105 (a variable name: how openssl and keytool get it, never argv)


def private(path: Path, text: str) -> None:
    """Write a file only its owner can read (passwords, keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def run(argv: list[str], what: str, secret_env: dict[str, str] | None = None) -> None:
    """Run a tool; UserError with its last output line if it fails.

    Secrets never go in `argv` (any local user can read /proc/<pid>/cmdline): they are passed in
    `secret_env`, which the tool reads by name (`openssl -passout env:NAME`, `keytool
    -storepass:env NAME`); a process's environment is readable by its owner only."""
    env = {**os.environ, **secret_env} if secret_env else None
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        raise UserError(f"could not {what}: {lines[-1] if lines else f'exit {done.returncode}'}")


def ensure_pki(d: Path, store_password: str, java: str, progress: Callable[[str], None]) -> None:
    """A test CA, the broker's keystore (CN=broker) and a truststore holding the CA, in `d`."""
    if (d / "broker.p12").is_file() and (d / "truststore.p12").is_file():
        return
    keytool = shutil.which("keytool", path=str(Path(java).parent)) or shutil.which("keytool")
    if shutil.which("openssl") is None or keytool is None:
        raise UserError("`surplus kafka up --secure` needs openssl and keytool (from the JDK) "
                        "to make its test CA")
    progress(f"making a test CA and the broker's keystore in {d} ...")
    d.mkdir(parents=True, exist_ok=True)
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(d / "ca.key"),
         "-out", str(d / "ca.pem"), "-days", str(CERT_DAYS), "-subj",
         "/CN=surplus-local-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "make the test CA")
    (d / "ca.key").chmod(0o600)
    issue_cert(d, "broker", server=True)
    run(["openssl", "pkcs12", "-export", "-in", str(d / "broker.pem"), "-inkey",
         str(d / "broker.key"), "-certfile", str(d / "ca.pem"), "-name", "broker",
         "-out", str(d / "broker.p12"), "-passout", f"env:{STORE_PASSWORD_ENV}"],
        "make the broker keystore", {STORE_PASSWORD_ENV: store_password})
    (d / "truststore.p12").unlink(missing_ok=True)
    run([keytool, "-importcert", "-noprompt", "-alias", "surplus-ca", "-file",
         str(d / "ca.pem"), "-keystore", str(d / "truststore.p12"), "-storetype", "PKCS12",
         "-storepass:env", STORE_PASSWORD_ENV], "make the truststore", {STORE_PASSWORD_ENV: store_password})


def issue_cert(d: Path, name: str, *, server: bool = False) -> tuple[Path, Path]:
    """(certificate, key) PEM files signed by the test CA in `d` with CN=`name` (its principal)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
        raise UserError(f"certificate name {name!r} is not a plain identifier")
    cert, key, csr, ext = (d / f"{name}.pem", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext")
    usage = "serverAuth,clientAuth" if server else "clientAuth"
    san = "subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else ""
    ext.write_text(f"{san}extendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(csr),
         "-subj", f"/O=surplus-local/CN={name}"], f"make a key for {name}")
    key.chmod(0o600)
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(d / "ca.pem"), "-CAkey",
         str(d / "ca.key"), "-CAcreateserial", "-out", str(cert), "-days", str(CERT_DAYS),
         "-extfile", str(ext)], f"sign the certificate of {name}")
    csr.unlink()
    ext.unlink()
    return cert, key
