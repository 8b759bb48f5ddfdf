"""Logging for every command: one line per state change of a service, the detail at DEBUG. Logging.

A broker that is down makes its clients repeat themselves: librdkafka logs a connection failure
several times a second (302 lines in the 15 s a worker waits for an unreachable broker), aiokafka
logs every failed metadata request and every `Group Coordinator Request failed` while a fresh
broker creates `__consumer_offsets`. Here all of it becomes one line per change of state:

    Kafka 127.0.0.1:1 unreachable: Connection refused         (WARNING, once)
    Kafka 127.0.0.1:1 reachable again after 63 s               (WARNING, once, when it is back)
    Kafka 127.0.0.1:9092 not ready yet: Coordinator load in progress   (INFO, once)
    Kafka 127.0.0.1:9092 ready                                  (INFO, once)

A cluster (several bootstrap servers) is unreachable only when every broker is: one broker down
is a line of its own, once per broker every BROKER_REPEAT_S (5 minutes), and the service's
state stays up while the other brokers serve (its partitions move to new leaders):

    Kafka a:9092,b:9092,c:9092: broker b:9092/2 unreachable: Connection refused; the other 2 brokers
        of the cluster carry on

and every raw line goes to the DEBUG level (`--loglevel debug` or SURPLUS_LOG_LEVEL=debug).

* `ServiceWatch` is the state of one service (`watch("Kafka 127.0.0.1:1")` is shared by name).
* `librdkafka_hooks(service)` is what every confluent-kafka client's configuration gets (its
  `logger`, its `error_cb` and `log.connection.close: false`); librdkafka then logs through Python
  logging, served by the client's `poll()`/`flush()` (an AdminClient's too).
* `Collapse` is the logging filter for aiokafka/faust/mode records (and any other logger named
  in `NOISY`): connection trouble becomes the state lines, other warnings of theirs are said once
  per distinct text every `repeat_s`.
* `configure(level)` is the one logging set-up the commands use (stderr, or a file for the demo,
  whose terminal holds a live table).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

SERVICE_LOG = logging.getLogger("surplus.service")
DETAIL_LOG = logging.getLogger("surplus.detail")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY = ("aiokafka", "faust", "mode", "kafka", "confluent_kafka")

# "cannot reach the service": librdkafka's log and error_cb texts, its error names, aiokafka's words
UNREACHABLE = re.compile(
    r"connect to .* failed|connection refused|connect call failed|unable connect|disconnected|"
    r"all broker|brokers are down|transport failure|failed to resolve|resolve|timed out|"
    r"receive failed|send failed|connection reset|_TRANSPORT|_ALL_BROKERS_DOWN|_RESOLVE|_TIMED_OUT|"
    r"broken pipe|no route to host|network is unreachable|host is unreachable|"
    r"unable to bootstrap|unable to update metadata|KafkaConnectionError|NodeNotReady|"
    r"Name or service not known", re.IGNORECASE)
# "reachable, but not serving yet": a fresh broker electing its group coordinator and leaders
NOT_READY = re.compile(
    r"coordinator load in progress|coordinator not available|coordinatornotavailable|"
    r"coordinatorloadinprogress|not ?coordinator|COORDINATOR_LOAD_IN_PROGRESS|"
    r"COORDINATOR_NOT_AVAILABLE|leader not available|leadernotavailable|LEADER_NOT_AVAILABLE",
    re.IGNORECASE)
# aiokafka's words for "it works": the group is joined, the coordinator found
READY = re.compile(r"discovered coordinator|joined group|successfully synced group|"
                   r"setting newly assigned partitions|updating subscribed topics", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_THREAD = re.compile(r"^\[thrd:[^\]]*\]:\s*")
# the reason in "...: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"
_FAILED = re.compile(r"failed: (?P<why>[^()]+?)\s*(\(after .*)?$", re.IGNORECASE)
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*(?P<why>[^'\"(]+)")
# aiokafka's exception in a text: "KafkaConnectionError: Connection at host:port closed"
_AIOKAFKA_ERROR = re.compile(r"(?P<name>KafkaConnectionError|NodeNotReadyError|RequestTimedOutError)\b[:(]?\s*"
                             r"(?P<why>[^\[\]()]*)")
_LIBRDKAFKA_LEVELS = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR,
                      4: logging.WARNING, 5: logging.INFO, 6: logging.INFO, 7: logging.DEBUG}

OK, UNREACHABLE_STATE, NOT_READY_STATE = "ok", "unreachable", "not ready"

# the one broker a connection error is about: librdkafka's "host:port/2: " or "host:port/bootstrap: "
# prefix; aiokafka's "node with id 2" / "node 2" / "node_id=2" / "fetch messages from 2:" / "connect to "h:p""
_LIBRDKAFKA_BROKER = re.compile(r"^(?P<broker>[^\s/]+:\d+/(?:\d+|bootstrap)): ")
_AIOKAFKA_NODE = re.compile(r"node(?: with id | id |_id=| )(?P<node>\d+)\b|"
                            r"fetch (?:messages|offsets) from (?P<fetch>\d+):|"
                            r"connect to [\"']?(?P<addr>[^\s\"':]+:\d+)", re.IGNORECASE)
BROKER_REPEAT_S = 300.0


def broker_of(text: str) -> str | None:
    """The broker a client's connection error names (`b:9092/2`, `node 2`, `b:9092`), or None
    when the text is about the cluster as a whole (`3/3 brokers are down`)."""
    text = " ".join(_THREAD.sub("", text).split())
    if match := _LIBRDKAFKA_BROKER.match(text):
        return match.group("broker")
    if match := _AIOKAFKA_NODE.search(text):
        node = match.group("node") or match.group("fetch")
        return f"node {node}" if node else match.group("addr")
    return None


def members_of(name: str) -> int:
    """How many servers a service called "Kafka a:9092,b:9092,c:9092" lists (1 for any other name)."""
    if not name.startswith("Kafka "):
        return 1
    return max(1, len([s for s in name[len("Kafka "):].split(",") if s.strip()]))


def classify(text: str) -> str | None:
    """UNREACHABLE_STATE, NOT_READY_STATE or None (not about the service's availability)."""
    if NOT_READY.search(text):
        return NOT_READY_STATE
    if UNREACHABLE.search(text):
        return UNREACHABLE_STATE
    return None


def reason(text: str) -> str:
    """The short why of a connection error text: `Connection refused`, `all brokers are down`."""
    text = " ".join(_THREAD.sub("", text).split())
    text = re.sub(r"^[^\s/]+/[^\s:]+: ", "", text)  # librdkafka's "host:port/bootstrap: " prefix
    if match := NOT_READY.search(text):
        if "leader" in match.group(0).lower():
            return "a partition has no leader yet"
        return "the group coordinator is not ready yet (a new broker creates __consumer_offsets first)"
    if match := _ERRNO.search(text):
        return match.group("why").strip().rstrip(":;,")
    if match := _AIOKAFKA_ERROR.search(text):
        return match.group("why").strip().rstrip(".:;,") or match.group("name")
    if match := _FAILED.search(text):
        return match.group("why").strip()
    if match := re.search(r"(\d+)/(\d+) brokers are down", text):
        return "all brokers are down" if match.group(1) == match.group(2) else match.group(0)
    return text[:160]


class ServiceWatch:
    """The availability of one service (`name`, e.g. "Kafka 127.0.0.1:9092"): a line per change.

    `trouble(kind, text)` and `ok()` are called by whatever notices (log hooks, the code that got an
    answer); only a change of state is logged, on `logger` (WARNING for unreachable and back,
    INFO for not ready and ready). Thread-safe (librdkafka's callbacks, the asyncio loop)."""

    def __init__(self, name: str, *, logger: logging.Logger = SERVICE_LOG, quiet: bool = False,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        # servers in the bootstrap list: above 1, one broker's error is not the service's state
        self.brokers = members_of(name)
        self.broker_lines: dict[str, float] = {}  # broker -> when its last line was said
        self.logger = logger
        self.quiet = quiet  # the lines at DEBUG: the caller says it in its own error line
        self._mono = monotonic
        self._lock = threading.Lock()
        self.state = OK
        self.since: float | None = None
        self.why = ""
        self.changes = 0

    @property
    def up(self) -> bool:
        return self.state == OK

    def trouble(self, kind: str, text: str) -> bool:
        """Connection trouble (`kind` from `classify`); True when this changed the state (a line)."""
        why = reason(text)
        with self._lock:
            if self.state == kind or (self.state == UNREACHABLE_STATE and kind == NOT_READY_STATE):
                return False
            first = self.state == OK
            self.state, self.why = kind, why
            self.since = self._mono() if first else self.since
            self.changes += 1
        self.said_down(kind, why)
        return True

    def connection_trouble(self, kind: str, text: str) -> bool:
        """A client's connection error: the service's trouble, or, when the bootstrap lists several
        brokers and the text names one of them, that broker's line (once per broker every
        BROKER_REPEAT_S; the state is unchanged). True when a line was said."""
        broker = broker_of(text) if self.brokers > 1 and kind == UNREACHABLE_STATE else None
        if broker is None:
            return self.trouble(kind, text)
        now = self._mono()
        with self._lock:
            if now - self.broker_lines.get(broker, -1e18) < BROKER_REPEAT_S:
                return False
            self.broker_lines[broker] = now
        self.said_broker_down(broker, reason(text))
        return True

    def ok(self) -> bool:
        """The service answered; True when it was down or not ready (a line)."""
        with self._lock:
            if self.state == OK:
                return False
            was, since = self.state, self.since
            self.state, self.since, self.changes = OK, None, self.changes + 1
            self.broker_lines.clear()  # after a whole outage, each broker's next failure is news
        self.said_up(was, self._mono() - since if since is not None else 0.0)
        return True

    # the lines (subclasses add what their reader needs to know)
    def said_down(self, kind: str, why: str) -> None:
        if kind == UNREACHABLE_STATE:
            self._say(logging.WARNING, f"{self.name} unreachable: {why}")
        else:
            self._say(logging.INFO, f"{self.name} not ready yet: {why}")

    def said_up(self, was: str, after_s: float) -> None:
        if was == UNREACHABLE_STATE:
            self._say(logging.WARNING, f"{self.name} reachable again after {after_s:.0f} s")
        else:
            self._say(logging.INFO, f"{self.name} ready")

    def said_broker_down(self, broker: str, why: str) -> None:
        others = self.brokers - 1
        self._say(logging.WARNING, f"{self.name}: broker {broker} unreachable: {why}; the other {others} "
                                   f"broker{'s' if others != 1 else ''} of the cluster carry on")

    def _say(self, level: int, text: str) -> None:
        self.logger.log(logging.DEBUG if self.quiet else level, "%s", text)


_WATCHES: dict[str, ServiceWatch] = {}
_WATCHES_LOCK = threading.Lock()


def watch(name: str) -> ServiceWatch:
    """The shared watch of the service called `name` (created on first use)."""
    with _WATCHES_LOCK:
        if name not in _WATCHES:
            _WATCHES[name] = ServiceWatch(name)
        return _WATCHES[name]


def kafka_service(bootstrap: str) -> str:
    return f"Kafka {bootstrap}"


class Once:
    """Say a warning once per distinct text (digits ignored) every `repeat_s`; the rest at DEBUG."""

    def __init__(self, repeat_s: float = 300.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.repeat_s = repeat_s
        self._mono = monotonic
        self._said: dict[str, float] = {}
        self._lock = threading.Lock()

    def first(self, text: str) -> bool:
        key = _DIGITS.sub("#", text)
        now = self._mono()
        with self._lock:
            if now - self._said.get(key, -1e18) < self.repeat_s:
                return False
            if len(self._said) > 10_000:  # texts that differ by more than digits: forget the old ones
                self._said.clear()
            self._said[key] = now
            return True


class LibrdkafkaLog:
    """confluent-kafka's `logger` (`log(level, fmt, *args)`) and `error_cb`, folded into `service`.

    Connection trouble goes to the service's watch; other warnings are said once per text on
    `surplus.librdkafka`; everything is also logged raw at DEBUG."""

    def __init__(self, service: ServiceWatch, *, once: Once | None = None,
                 logger: logging.Logger | None = None) -> None:
        self.service = service
        self.once = once or Once()
        self.logger = logger or logging.getLogger("surplus.librdkafka")
        self.errors = 0

    def log(self, level: int, fmt: str, *args: Any) -> None:
        text = fmt % args if args else fmt
        message = str(args[-1]) if len(args) == 3 else text
        self.logger.debug("%s", text)
        kind = classify(text)
        if kind is not None:
            self.service.connection_trouble(kind, message)
        elif level >= logging.WARNING and self.once.first(text):
            self.logger.log(level, "librdkafka: %s", _THREAD.sub("", message)[:300])

    def error(self, name: str, text: str) -> None:
        """An `error_cb` report, as a KafkaError's name and text."""
        self.errors += 1
        self.logger.debug("error_cb %s: %s", name, text)
        kind = classify(name) or classify(text)
        if kind is not None:
            self.service.connection_trouble(kind, text)
        elif self.once.first(f"{name}: {text}"):
            self.logger.warning("Kafka: %s: %s", name, text[:300])

    def error_cb(self, err: Any) -> None:
        """confluent-kafka's `error_cb` (a KafkaError)."""
        self.error(err.name(), err.str())


def librdkafka_hooks(bootstrap: str, log: LibrdkafkaLog | None = None) -> dict[str, Any]:
    """The logging part of a confluent-kafka client's configuration: librdkafka's logs and errors
    into Python logging through `log` (by default the shared watch of "Kafka <bootstrap>"), and no
    log line when an idle connection is closed. `poll()`/`flush()` serve them."""
    log = log or LibrdkafkaLog(watch(kafka_service(bootstrap)))
    return {"logger": log, "error_cb": log.error_cb, "log.connection.close": False}


def hooks_of(config: dict[str, Any]) -> LibrdkafkaLog | None:
    """The LibrdkafkaLog a configuration made by `librdkafka_hooks` carries."""
    logger = config.get("logger")
    return logger if isinstance(logger, LibrdkafkaLog) else None


class Collapse(logging.Filter):
    """A handler filter: the NOISY libraries' connection trouble as state lines of `service`.

    A record that changes the state is rewritten into the state's one line; a repeat is dropped
    (kept as it is when `debug`); other records of those libraries below WARNING are dropped unless
    `debug`, their warnings said once per text. The decision is kept on the record, so several
    handlers agree."""

    def __init__(self, service: ServiceWatch | None = None, *, debug: bool = False,
                 once: Once | None = None) -> None:
        super().__init__()
        self.service = service
        self.debug = debug
        self.once = once or Once()

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, "_surplus_keep", None)
        if decided is not None:
            return bool(decided)
        keep = self._decide(record)
        record._surplus_keep = keep
        return keep

    def _decide(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(NOISY):
            return True
        try:
            text = record.getMessage()
        except Exception:  # a library's bad format string is not ours to crash on
            return True
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text} {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        kind = classify(text)
        if kind is not None and self.service is not None:
            self.service.connection_trouble(kind, text)  # a change is said by the watch; this is its detail
            return self.debug
        if READY.search(text) and self.service is not None:
            self.service.ok()
        if self.debug:
            return True
        if record.levelno < logging.WARNING:
            return False
        if kind is not None:  # trouble with no service to say it for: once per text
            return self.once.first(text)
        return self.once.first(f"{record.name}: {text}")


_CONFIGURED: dict[str, Any] = {}


def configure(level: str | int = "info", *, stream: IO[str] | None = None, file: Path | None = None,
              kafka: str | None = None) -> Collapse:
    """The logging of a command: a handler (stderr, or `file`) at `level`, with `Collapse` for the
    service `kafka` (bootstrap servers) when given. Library loggers are kept quiet unless `level`
    is debug (aiokafka at INFO, so that its "joined group" says the broker is back). Returns the
    filter (also for handlers others install, e.g. faust's)."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    debug = numeric <= logging.DEBUG
    service = watch(kafka_service(kafka)) if kafka else None
    collapse = Collapse(service, debug=debug)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_surplus", False):
            root.removeHandler(old)
            old.close()
    handler: logging.Handler = (logging.FileHandler(file, encoding="utf-8") if file is not None
                                else logging.StreamHandler(stream or sys.stderr))
    setattr(handler, "_surplus", True)  # noqa: B010 - a mark on a library object
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(collapse)
    root.addHandler(handler)
    root.setLevel(numeric)
    quiet(debug)
    _CONFIGURED["collapse"] = collapse
    return collapse


def quiet(debug: bool) -> None:
    """Library loggers at WARNING (aiokafka at INFO, filtered) unless debugging."""
    if debug:
        return
    for name in ("faust", "mode", "kafka", "confluent_kafka", "surplus.librdkafka", "agents.librdkafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # clickhouse-connect logs "Unexpected Http Driver Exception" before raising what the command
    # turns into its one line
    logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)
    # its retries (the caller says the outcome); clickhouse-connect sets "urllib3" itself on import
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.INFO)


def current() -> Collapse | None:
    """The filter `configure` installed last (None before)."""
    collapse = _CONFIGURED.get("collapse")
    return collapse if isinstance(collapse, Collapse) else None
