"""The Apache Kafka jars from Maven and the JVM that runs them (the local broker's runtime). I/O.

`ensure_jars(dir)` resolves `deploy/kafka/pom.xml` with mvn into `dir` once; `find_java()` finds
Java 17; `jvm_argv(...)` is the JVM command line (small heap, C1 JIT, serial GC) both the storage
tool and the broker start with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from surplus.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_VERSION = "3.9.2"
KAFKA_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
DEFAULT_JARS = REPO_ROOT / "var" / "cache" / "kafka-jars"

# Measured on 2 cores (JDK 17): C1-only JIT starts the broker in 1.7 s instead of 2.2 s and did not
# lower demo throughput; the serial collector keeps the footprint small. No C2 or G1 needed here.
JVM_FLAGS = (
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Xss512k",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

Progress = Callable[[str], None]


def find_java() -> str:
    """The java executable ($JAVA_HOME/bin/java, else java on PATH), or a UserError."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise UserError("java not found on PATH: the local Kafka broker needs Java 17 "
                        "(e.g. apt install openjdk-17-jre-headless), or set KAFKA_BOOTSTRAP "
                        "to use an existing cluster")
    return found


def ensure_jars(jars_dir: Path, progress: Progress) -> Path:
    """Make sure the Kafka jars are in `jars_dir`, resolving them with Maven if not."""
    if (jars_dir / KAFKA_JAR).is_file():
        return jars_dir
    if not POM.is_file():
        raise UserError(f"the Kafka jars are not in {jars_dir} and {POM} is missing: "
                        "fetch them from a source checkout of surplus")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise UserError(f"the Kafka jars are not in {jars_dir} and mvn is not on PATH: "
                        "install Maven (e.g. apt install maven) to fetch them once")
    progress(f"fetching Apache Kafka {KAFKA_VERSION} jars with Maven into {jars_dir} (once) ...")
    jars_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={jars_dir}"],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0 or not (jars_dir / KAFKA_JAR).is_file():
        output = (done.stdout + done.stderr).splitlines()
        errors = [line for line in output if "ERROR" in line] or output or ["no output"]
        raise UserError(f"mvn could not fetch the Kafka jars: {errors[0].strip()}")
    return jars_dir


def jvm_argv(java: str, heap_mb: int, *, log4j: Path, logs_dir: Path, jars_dir: Path) -> list[str]:
    """The JVM part of a Kafka command line (main class and arguments follow)."""
    return [
        java, f"-Xmx{heap_mb}m", f"-Xms{min(heap_mb, 128)}m", *JVM_FLAGS,
        f"-Dlog4j.configuration=file:{log4j}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp", str(jars_dir / "*"),
    ]
