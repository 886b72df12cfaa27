"""buraq's side of bench/peers/compare.py: `enqueue N KEY`, `worker 0 KEY`, `cleanup 0 KEY`.

The pipeline (pool 100, handler bench.incr from buraq's bench plugin) counts into KEY.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import buraq
from buraq.bench.procs import PLUGINS_DIR


def folder(key: str) -> Path:
    path = Path(tempfile.gettempdir(), "buraq-peers-" + key.rpartition(":")[2])
    path.mkdir(exist_ok=True)
    (path / "incr.yaml").write_text(f"name: peers-{path.name}\nhandler: bench.incr\npool: 100\n"
                                    f"options:\n  counter: '{key}'\n")
    return path


def main(verb: str, count: str, key: str) -> None:
    url = os.environ["BENCH_REDIS_URL"]
    pipelines = folder(key)
    name = f"peers-{pipelines.name}"
    if verb == "enqueue":
        with buraq.Client(url, pipelines=pipelines, plugins_dir=None) as client:
            started = time.perf_counter()
            client.enqueue_many(name, ({"n": i} for i in range(int(count))))
            print(time.perf_counter() - started, buraq.__version__)
    elif verb == "worker":
        os.execv(sys.executable, [sys.executable, "-m", "buraq", "--log-level", "warning", "serve", str(pipelines),
                                  "--plugins-dir", str(PLUGINS_DIR), "--redis-url", url, "--listen", "off"])
    elif verb == "cleanup":
        import redis

        redis.Redis.from_url(url).delete(*(f"buraq:{{{name}}}:{part}" for part in ("tasks", "dlq", "delayed", "consumers")))
        for path in pipelines.iterdir():
            path.unlink()
        pipelines.rmdir()


if __name__ == "__main__":
    main(*sys.argv[1:4])
