"""Memory over a million chunks: the process's RSS stays flat while a stream is consumed.

    python benchmarks/bench_memory.py [--chunks 1000000] [--every 100000] [--framing packed|per-event]

A server in its own process (``_server_stream.py``: the events are generated as they are
sent, so the server never holds the ~230 MB body) streams N OpenAI-format chunks. Each
client runs in a fresh Python process of its own, consumes the whole stream and samples
its RSS (``/proc/self/statm``) every ``--every`` chunks:

- ``streamcoord``: ``Client("openai", ...).stream_chat(...)``, features off;
- ``requests+iter_lines (floor)``: requests + ``iter_lines`` + ``json.loads``, keeping nothing;
- ``requests+iter_lines, keeping text``: the same, appending each content string to a list,
  which is what ``stream.text`` does (see below) - the like-for-like baseline.

``stream.text`` accumulates the whole answer by design: the worker keeps every content
string in a list and joins them when ``text`` is read. That costs more than the text's
length: each part is a separate ``str`` object (~57 bytes of object, 64 in the allocator,
plus an 8-byte list slot for a ~8-character piece). The benchmark prints both figures:
the text's length, and what the parts hold in memory (``sys.getsizeof`` of each part plus
the list), counted at the moments the RSS was sampled. The verdict line subtracts the
latter from the measured growth: what remains is growth that is *not* the answer's text,
and under 10 MB counts as flat.

This is a benchmark, not a test: it asserts nothing about timing and is never run by tox.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MESSAGES = [{"role": "user", "content": "bench"}]
MB = 1e6
FLAT_MB = 10.0

VARIANTS = {
    "streamcoord": "streamcoord (features off)",
    "floor": "requests+iter_lines (floor)",
    "floor-text": "requests+iter_lines, keeping text",
}


# -- measuring, in the child process ------------------------------------------------------
def rss_bytes() -> int:
    """Resident set size now: /proc/self/statm where there is one, else the peak from
    ``resource`` (the only figure it has; good enough to show growth on macOS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def allocated(size: int) -> int:
    """What CPython's small-object allocator really takes for an object of ``size`` bytes:
    blocks are multiples of 16 bytes up to 512 (bigger objects go to malloc)."""
    return (size + 15) & ~15 if size <= 512 else size


def parts_bytes(parts: List[str], upto: int) -> int:
    """What the first ``upto`` parts hold in memory: the str objects (as allocated) and
    their 8-byte list slots."""
    return sum(allocated(sys.getsizeof(p)) for p in parts[:upto]) + 8 * upto


def worker_parts(stream: Any) -> Optional[List[str]]:
    """The list of str parts behind ``stream.text`` (private; only to count what it holds).
    None if streamcoord's internals have changed: the text is then estimated (see report)."""
    parts = getattr(getattr(getattr(stream, "_worker", None), "answer", None), "text_parts", None)
    return parts if isinstance(parts, list) else None


def run_streamcoord(base_url: str, every: int):
    import streamcoord

    client = streamcoord.Client("openai", api_key="bench", base_url=base_url, max_retries=0)
    stream = client.stream_chat(MESSAGES, model="m")
    samples = []  # (chunks consumed, RSS, parts held by the worker at that moment)
    n = 0
    for chunk in stream:
        if chunk.content:
            n += 1
            if n % every == 0:
                held = worker_parts(stream)
                samples.append((n, rss_bytes(), len(held) if held is not None else n))
    parts = worker_parts(stream)
    parts = list(parts) if parts is not None else None
    text_len = len(stream.text.encode())
    stream.close()
    return n, samples, parts, text_len


def run_floor(base_url: str, every: int, keep_text: bool):
    import requests

    parts: List[str] = []
    samples = []
    n = 0
    with requests.post(f"{base_url}/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True},
                       stream=True) as resp:
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                data = line[6:]
                if data == b"[DONE]":
                    break
                content = json.loads(data)["choices"][0]["delta"].get("content")
                if content:
                    n += 1
                    if keep_text:
                        parts.append(content)
                    if n % every == 0:
                        samples.append((n, rss_bytes(), len(parts)))
    return n, samples, parts, sum(len(p.encode()) for p in parts)


def child(variant: str, base_url: str, every: int) -> None:
    import requests  # noqa: F401 - imported before the clock starts

    import streamcoord  # noqa: F401

    start_rss = rss_bytes()
    started = time.perf_counter()
    if variant == "streamcoord":
        n, samples, parts, text_len = run_streamcoord(base_url, every)
    else:
        n, samples, parts, text_len = run_floor(base_url, every, keep_text=(variant == "floor-text"))
    elapsed = time.perf_counter() - started
    end_rss = rss_bytes()
    # What the text held in memory at each sample, counted after the run (not during it).
    held_bytes = [parts_bytes(parts, held) if parts is not None else None for _, _, held in samples]
    print(json.dumps({
        "chunks": n, "seconds": elapsed, "start_rss": start_rss, "end_rss": end_rss,
        "samples": [[k, rss, held, hb] for (k, rss, held), hb in zip(samples, held_bytes)],
        "text_len": text_len, "parts": len(parts) if parts is not None else n,
    }))


# -- driving, in the parent process --------------------------------------------------------
def start_server(n_chunks: int, framing: str):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "benchmarks", "_server_stream.py"), str(n_chunks), framing],
        stdout=subprocess.PIPE, text=True,
    )
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def run_variant(variant: str, base_url: str, every: int) -> Dict[str, Any]:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", variant, "--url", base_url, "--every", str(every)],
        stdout=subprocess.PIPE, check=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_at(result: Dict[str, Any], k: int) -> Optional[List[int]]:
    for sample in result["samples"]:
        if sample[0] == k:
            return sample
    return None


def report(name: str, result: Dict[str, Any], chunks: int, every: int,
           per_part: Optional[float] = None) -> Dict[str, float]:
    """Prints one client's figures. ``per_part``: bytes per text part, to estimate what the
    text holds when it could not be counted (streamcoord's internals changed)."""
    first, last = rss_at(result, every), rss_at(result, chunks)
    assert result["chunks"] == chunks, (name, result["chunks"], chunks)
    assert first is not None and last is not None, (name, "no samples")
    growth = (last[1] - first[1]) / MB
    estimated = first[3] is None or last[3] is None
    if estimated:
        text_mem = (per_part or 0.0) * (last[2] - first[2]) / MB if result["text_len"] else 0.0
    else:
        text_mem = (last[3] - first[3]) / MB
    # The text's length over the same stretch (the parts are ~uniform in size).
    text_len = result["text_len"] * (last[2] - first[2]) / max(result["parts"], 1) / MB
    trail = "  ".join(f"{s[1] / MB:6.1f}" for s in result["samples"])
    print(f"\n{name}: {result['chunks']:,} chunks in {result['seconds']:.2f}s "
          f"({result['chunks'] / result['seconds']:,.0f} chunks/s)")
    print(f"  RSS (MB) before the stream {result['start_rss'] / MB:.1f}; every {every:,} chunks: {trail}")
    print(f"  RSS at {every:,}: {first[1] / MB:.1f} MB   at {chunks:,}: {last[1] / MB:.1f} MB   "
          f"growth: {growth:+.1f} MB")
    if result["parts"]:
        print(f"  text kept over that stretch: {text_len:.1f} MB of text ({result['text_len'] / MB:.1f} MB in all), "
              f"held as {last[2] - first[2]:,} str parts = {text_mem:.1f} MB in memory "
              f"({text_mem * MB / max(last[2] - first[2], 1):.0f} B/chunk"
              + (", ESTIMATED from the requests run: streamcoord's parts could not be counted)" if estimated else ")"))
    else:
        print("  text kept: none")
    return {"growth": growth, "text_mem": text_mem, "text_len": text_len}


def rows(quick: bool) -> List[Dict[str, str]]:
    """The suite's rows (benchmarks/run.py): streamcoord against requests keeping the same text."""
    chunks, every = (200_000, 50_000) if quick else (1_000_000, 100_000)
    proc, base_url = start_server(chunks, "packed")
    try:
        results = {v: run_variant(v, base_url, every) for v in VARIANTS}
    finally:
        proc.kill()
        proc.wait()
    like = results["floor-text"]["samples"][-1]
    figures = {v: report(VARIANTS[v], results[v], chunks, every, like[3] / max(like[2], 1)) for v in VARIANTS}
    out = []
    for v in ("floor-text", "streamcoord"):
        f = figures[v]
        beyond = f["growth"] - f["text_mem"]
        out.append({"bench": f"memory from {every // 1000}k to {chunks // 1000}k chunks (RSS growth)",
                    "client": VARIANTS[v], "figure": f"{f['growth']:+.1f} MB, of which the text {f['text_mem']:.1f} MB",
                    "ratio": f"{beyond:+.1f} MB beyond the text ({'flat' if beyond < FLAT_MB else 'NOT flat'})",
                    "cpu": ""})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000, help="sample the RSS every this many chunks")
    parser.add_argument("--framing", choices=["packed", "per-event"], default="packed")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.every)
        return
    if args.chunks % args.every or args.chunks < 2 * args.every:
        parser.error("--chunks must be a multiple of --every, and at least twice it")

    proc, base_url = start_server(args.chunks, args.framing)
    try:
        print(f"{args.chunks:,} chunks per stream, {args.framing} HTTP chunks, each client in a fresh process, "
              f"Python {sys.version.split()[0]}")
        results = {v: run_variant(v, base_url, args.every) for v in VARIANTS}
    finally:
        proc.kill()
        proc.wait()
    # Bytes per text part as counted in the requests run, should streamcoord's be uncountable.
    like = results["floor-text"]["samples"][-1]
    per_part = like[3] / max(like[2], 1)
    figures = {v: report(VARIANTS[v], results[v], args.chunks, args.every, per_part) for v in VARIANTS}

    sc, like, floor = figures["streamcoord"], figures["floor-text"], figures["floor"]
    beyond = sc["growth"] - sc["text_mem"]
    beyond_len = sc["growth"] - sc["text_len"]
    print(f"\nsummary, from {args.every:,} to {args.chunks:,} chunks:")
    print(f"  streamcoord RSS growth                              {sc['growth']:+7.1f} MB")
    print(f"  stream.text over that stretch, its length           {sc['text_len']:7.1f} MB  (~8 bytes per chunk)")
    print(f"  stream.text over that stretch, as held in memory    {sc['text_mem']:7.1f} MB  "
          f"(one str object per chunk in a list)")
    print(f"  requests+iter_lines keeping the same text, growth   {like['growth']:+7.1f} MB  "
          f"(keeping nothing: {floor['growth']:+.1f} MB)")
    print(f"  streamcoord growth beyond the text's length         {beyond_len:+7.1f} MB  "
          f"({'under' if beyond_len < FLAT_MB else 'over'} {FLAT_MB:.0f} MB)")
    print(f"  streamcoord growth beyond the text as held          {beyond:+7.1f} MB")
    print(f"  streamcoord growth minus requests keeping the text  {sc['growth'] - like['growth']:+7.1f} MB")
    verdict = "FLAT" if beyond < FLAT_MB else "NOT FLAT"
    print(f"VERDICT: {verdict}: growth beyond the accumulated stream.text (as held in memory) is {beyond:+.1f} MB "
          f"over {args.chunks - args.every:,} chunks (flat means < {FLAT_MB:.0f} MB)")


if __name__ == "__main__":
    main()
