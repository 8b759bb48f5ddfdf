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
from typing import Any

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


PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")  # SPEC §3 ids: a DC's principal
PLAIN_ORG = re.compile(r"[A-Za-z0-9 ._-]{1,64}")


def check_subject(subject: Any, name: str) -> None:
    """Refuse a certificate subject that is not exactly `CN=name` or `O=<plain>, CN=name`.

    `subject` is a `cryptography.x509.Name`. Subjects are adversarial (a DC writes its own CSR):
    a second CN, a CN inside another attribute, special characters, multi-valued RDNs and an
    empty CN are all refused, so a signed certificate maps to `name` and to no other principal
    under deploy/kafka's `ssl.principal.mapping.rules`. Raises UserError naming the problem."""
    from cryptography.x509.oid import NameOID

    if not PLAIN_NAME.fullmatch(name):
        raise UserError(f"certificate name {name!r} is not a DC id (lowercase a-z0-9 . _ -)")
    rdns = list(subject.rdns)
    if any(len(rdn) != 1 for rdn in rdns):
        raise UserError("the CSR's subject has a multi-valued RDN (+): refused")
    attributes = [next(iter(rdn)) for rdn in rdns]
    kinds = [a.oid for a in attributes]
    if kinds not in ([NameOID.COMMON_NAME], [NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME]):
        shown = subject.rfc4514_string() or "(empty)"
        raise UserError(f"the CSR's subject {shown!r} is not exactly CN=<dc_id> or O=<name>,CN=<dc_id>: refused")
    if kinds[0] == NameOID.ORGANIZATION_NAME and not PLAIN_ORG.fullmatch(str(attributes[0].value)):
        raise UserError("the CSR's O= holds characters other than letters, digits, space . _ -: refused")
    common_name = str(attributes[-1].value)
    if common_name != name:
        raise UserError(f"the CSR's CN {common_name!r} is not the DC it was signed for ({name!r}): refused")


def sign_csr(d: Path, csr_pem: bytes, name: str) -> Path:
    """Sign a DC's own CSR with the test CA in `d` after `check_subject`; return the cert path.

    Raises UserError when the CSR does not parse, its signature is wrong, or its subject is refused."""
    from cryptography import x509

    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise UserError("the CSR is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise UserError("the CSR's signature does not verify: refused")
    check_subject(csr.subject, name)
    csr_file, cert, ext = d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
    csr_file.write_bytes(csr_pem)
    ext.write_text("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    try:
        _sign(d, csr_file, cert, ext, name)
    finally:
        csr_file.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
    return cert


def _sign(d: Path, csr: Path, cert: Path, ext: Path, name: str) -> None:
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(d / "ca.pem"), "-CAkey",
         str(d / "ca.key"), "-CAcreateserial", "-out", str(cert), "-days", str(CERT_DAYS),
         "-extfile", str(ext)], f"sign the certificate of {name}")


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
    _sign(d, csr, cert, ext, name)
    csr.unlink()
    ext.unlink()
    return cert, key
