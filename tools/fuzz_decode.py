"""Long fuzz run of `decode` (+ the signature verifier): `make fuzz` = `--seconds 300`. A tool.

With atheris installed (pip install atheris) it runs coverage-guided under libFuzzer, seeded
from the golden examples and the hostile corpus of tests/unit/test_fuzz_decode.py, keeping its
corpus in var/fuzz/decode/. Without it, it runs the same hostile generators at random until the
time is up. Either way a broken invariant (decode raised, or returned anything other than an
event or a reject with a reason and a detail of at most 200 characters) exits non-zero and
leaves the input in var/fuzz/crash-<sha1>.bin; the resident memory is capped (--rss-mb).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OUT = REPO / "var" / "fuzz"


def _one(data: bytes) -> None:
    """One input: the first byte picks raw bytes, raw with a fuzzed header, or a hostile message."""
    from schemas.decode import decode
    from tests.unit.test_fuzz_decode import DC, NOW, VERIFIER, check, hostile, hostile_headers

    mode, body = (data[0] % 3, data[1:]) if data else (0, b"")
    if mode == 0:
        raw, headers = body, {}
    elif mode == 1:
        cut = body.find(b"\n")
        raw, headers = body[cut + 1:], {"surplus-signature": body[:max(cut, 0)]}
    else:
        rnd = random.Random(body)
        raw = hostile(rnd)
        headers = hostile_headers(rnd, raw)
    check(raw, decode(raw, now=NOW, key=DC.encode(), headers=headers,
                      verifier=VERIFIER if mode else None))


def _save(data: bytes) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"crash-{hashlib.sha1(data).hexdigest()}.bin"  # noqa: S324 - a file name
    path.write_bytes(data)
    return path


def run_atheris(seconds: int, rss_mb: int) -> None:
    import atheris

    with atheris.instrument_imports(include=["schemas", "streams.signing"]):
        import schemas.decode
        import schemas.events
        import schemas.signing  # noqa: F401 - instrumented before use
        import streams.signing  # noqa: F401 - instrumented before use
        from tests.unit.test_fuzz_decode import SEEDS
    corpus = OUT / "decode"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = [b"\x00" + s for s in SEEDS]
    seeds += [b"\x00" + p.read_bytes() for p in sorted((REPO / "schemas/examples").glob("*.json"))]
    for seed in seeds:
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)  # noqa: S324
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", f"-rss_limit_mb={rss_mb}",
                   "-max_len=70000", "-timeout=10", f"-artifact_prefix={OUT}/",
                   str(corpus)], _one)
    atheris.Fuzz()


def run_random(seconds: int, rss_mb: int, seed: int) -> int:
    rnd = random.Random(seed)
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        data = rnd.randbytes(rnd.choice([1, 9, 33, 300, 5000]))
        try:
            _one(data)
        except Exception as exc:
            print(f"invariant broken ({type(exc).__name__}: {exc}); input saved to {_save(data)}",
                  file=sys.stderr)
            return 1
        count += 1
        if count % 1000 == 0:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            if rss > rss_mb:
                print(f"resident memory {rss} MiB over the {rss_mb} MiB cap", file=sys.stderr)
                return 1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{count} inputs in {seconds} s, no invariant broken; max RSS {rss} MiB")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("--engine", choices=["auto", "atheris", "random"], default="auto",
                        help="atheris (coverage-guided) when installed, else random")
    parser.add_argument("--rss-mb", type=int, default=1536, help="resident memory cap")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random engine seed")
    args = parser.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "random"
    print(f"fuzzing decode for {args.seconds} s with the {engine} engine", file=sys.stderr)
    if engine == "atheris":
        run_atheris(args.seconds, args.rss_mb)  # exits the process
    return run_random(args.seconds, args.rss_mb, args.seed)


if __name__ == "__main__":
    sys.exit(main())
