"""A long decoder fuzz run with the shipped weights: mutated .lic files (checksums recomputed) go
to a worker process that decodes them as `lic decode` does; every outcome, the time of each file
and the worker's peak memory are recorded, and a file that takes longer than --hang seconds is
a hang (the worker is restarted).

    python benchmarks/fuzz.py --minutes 30 [--seed 0] [--out docs/results-fuzz.json]

Seeds: the conformance files of every shipped model and the regression corpus (tests/).
Files that crash or hang are written to --keep; add them to tests/corpus/found/ with the phrase
their error must contain (expected.json) once the decoder refuses them.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzzing import mutate


def worker(jobs: multiprocessing.Queue, results: multiprocessing.Queue) -> None:
    from lic_cli.cli import USER_ERRORS
    from lic_cli.codec import CodecSession, decode_file

    session = CodecSession()
    while True:
        index, data = jobs.get()
        started = time.perf_counter()
        try:
            decode_file(data, session)
            outcome = "decoded"
        except USER_ERRORS:
            outcome = "refused"
        except Exception as error:  # what the fuzz run is looking for
            outcome = f"crash: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        results.put((index, outcome, time.perf_counter() - started, peak))


class Worker:
    def __init__(self):
        self.jobs, self.results = multiprocessing.Queue(), multiprocessing.Queue()
        self.process = multiprocessing.Process(target=worker, args=(self.jobs, self.results), daemon=True)
        self.process.start()

    def decode(self, index: int, data: bytes, timeout: float):
        self.jobs.put((index, data))
        return self.results.get(timeout=timeout)

    def stop(self) -> None:
        self.process.kill()
        self.process.join()


def seeds() -> list[tuple[str, bytes]]:
    folders = (ROOT / "tests" / "conformance", ROOT / "tests" / "corpus", ROOT / "tests" / "corpus" / "found")
    return [(path.name, path.read_bytes()) for folder in folders for path in sorted(folder.glob("*.lic"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang", type=float, default=10.0, help="seconds after which a file counts as a hang")
    parser.add_argument("--keep", type=Path, default=Path("runs/fuzz"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    corpus = seeds()
    outcomes: Counter = Counter()
    slowest, peak, problems, count = (0.0, ""), 0.0, [], 0
    current = Worker()
    current.decode(-1, corpus[0][1], timeout=120)  # loads the weights
    deadline = time.monotonic() + args.minutes * 60
    while time.monotonic() < deadline:
        name, data = corpus[rng.randrange(len(corpus))]
        for _ in range(rng.randint(1, 3)):
            data = mutate(data, rng)
        count += 1
        try:
            _, outcome, seconds, rss = current.decode(count, data, timeout=args.hang)
        except queue.Empty:
            outcome, seconds, rss = "hang", args.hang, peak
            current.stop()
            current = Worker()
            current.decode(-1, corpus[0][1], timeout=120)
        outcomes[outcome.split(":")[0]] += 1
        peak = max(peak, rss)
        if seconds > slowest[0]:
            slowest = (seconds, name)
        if outcome.startswith(("crash", "hang")):
            args.keep.mkdir(parents=True, exist_ok=True)
            (args.keep / f"{count}-{name}").write_bytes(data)
            problems.append({"file": f"{count}-{name}", "outcome": outcome})
        if count % 500 == 0:
            print(f"{count} files: {dict(outcomes)}, slowest {slowest[0]:.2f} s ({slowest[1]}), "
                  f"peak RSS {peak:.2f} GiB", flush=True)
    current.stop()
    summary = {"command": "python benchmarks/fuzz.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
               "minutes": args.minutes, "files": count, "outcomes": dict(outcomes), "slowest_s": slowest[0],
               "slowest_seed": slowest[1], "peak_rss_gib": peak, "problems": problems}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
