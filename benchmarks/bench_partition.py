"""Cost curves of graph partitioning (`unist.patching.partition`): seconds vs N, before and after.

    .venv/bin/python benchmarks/bench_partition.py [--budget 60] [--max-n 100000] [--before 0cf8bd6]

Each curve times one cold `partition_graph(N, k=16, ...)` (caches cleared; the best of 3 calls when
a call takes < 0.1 s) on a deterministic graph:

  coords          N random points (coordinate bisection)
  geometric       random geometric graph, edges only (mean degree 3..10, many small components)
  grid            sqrt(N) x sqrt(N) 4-neighbour grid, edges only
  random          2N uniformly random edges (an expander: no locality to find, costly to factorise)
  pems07 copies   N / 883 disjoint copies of the real PEMS07 graph (17 components each), edges only;
                  the copies share no edge, so this is PEMS07's structure at scale
  pairs           N / 2 disjoint edges (N / 2 components)
  isolated 90%    a path over the first 10 % of the nodes, the other 90 % isolated
  crops           a geometric graph of N nodes, edges only, cropped to 1,024 nodes
                  (`unist.train.data_mix._crop_graph`, as in training) and the crop partitioned;
                  seconds per draw, averaged over 10 draws after one warm-up draw

"before" is the code at git revision --before (default 0cf8bd6, the last commit with the spectral-layout
partition: `git show REV:unist/patching/partition.py`, and that revision's `_crop_graph` for the
crops curve), "now" the working tree. Every curve runs in its own child
process; a point that takes longer than --budget seconds is killed and the curve stops there
(shown as "> budget"). Prints one table, a fitted log-log slope per curve (points with N >= 1000)
and writes benchmarks/results/partition_<host>.csv.

Then a locality table (in this process, both versions): on a geometric graph (3,000 nodes), a 60 x 60
grid, a random graph (2,000 nodes), PEMS07 (883 nodes, 17 components) and 3,000 nodes in pairs and
isolated nodes, the mean number of connected pieces of a patch's induced subgraph (1.0: every patch
is connected; a random grouping of 16 nodes of these sparse graphs gives ~14-16) and the fraction of
edges cut between patches; the geometric graph also with coordinate bisection of its true positions
as the reference. Written to benchmarks/results/partition_locality_<host>.csv.
"""
from __future__ import annotations

import argparse
import ast
import csv
import importlib.util
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from unist.data.series import STSeries
from unist.data.synthetic_common import random_geometric_graph
from unist.patching import partition
from unist.train.data_mix import _crop_graph

REPO = Path(__file__).resolve().parents[1]
K = 16
CROP = 1024
CURVES = ("coords", "geometric", "grid", "random", "pems07 copies", "pairs", "isolated 90%", "crops")
SIZES = (500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)


# ---------------------------------------------------------------------------------- graphs
def pems07_edges() -> np.ndarray:
    root = Path(os.environ.get("UNIST_DATA_DIR", REPO.parent / "shared" / "data"))
    e = np.loadtxt(root / "pems_graphs" / "PEMS07.csv", delimiter=",", skiprows=1)
    return e[:, :2].astype(np.int64).T


def make_graph(curve: str, n: int) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """(num_nodes, coords or None, edge_index or None) of `curve` at about n nodes, deterministic."""
    rng = np.random.default_rng(n)
    if curve == "coords":
        return n, rng.random((n, 2)), None
    if curve in ("geometric", "crops"):
        return n, None, random_geometric_graph(rng, n)[1]
    if curve == "grid":
        side = int(round(np.sqrt(n)))
        idx = np.arange(side * side).reshape(side, side)
        ei = np.concatenate([np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()]),
                             np.stack([idx[:-1].ravel(), idx[1:].ravel()])], 1)
        return side * side, None, ei
    if curve == "random":
        return n, None, rng.integers(0, n, size=(2, 2 * n))
    if curve == "pems07 copies":
        base = pems07_edges()
        copies = max(1, round(n / 883))
        return 883 * copies, None, np.concatenate([base + 883 * c for c in range(copies)], 1)
    if curve == "pairs":
        n -= n % 2
        return n, None, np.stack([np.arange(0, n, 2), np.arange(1, n, 2)])
    if curve == "isolated 90%":
        m = max(2, n // 10)
        return n, None, np.stack([np.arange(m - 1), np.arange(1, m)])
    raise ValueError(f"unknown curve {curve!r}: choose from {CURVES}")


# ---------------------------------------------------------------------------------- versions
def git_show(rev: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout


def load_before(rev: str, tmp: Path) -> tuple[ModuleType, Callable]:
    """Revision `rev`'s partition module and its `_crop_graph` (the function's source alone, run with
    the names it uses)."""
    path = tmp / "partition_before.py"
    path.write_text(git_show(rev, "unist/patching/partition.py"))
    spec = importlib.util.spec_from_file_location("partition_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    mix = git_show(rev, "unist/train/data_mix.py")
    fn = next(node for node in ast.parse(mix).body if isinstance(node, ast.FunctionDef) and node.name == "_crop_graph")
    scope = {"np": np, "replace": replace, "STSeries": STSeries}
    exec(compile(ast.Module([fn], []), f"{rev}:unist/train/data_mix.py", "exec"), scope)
    return mod, scope["_crop_graph"]


def load_now() -> tuple[ModuleType, Callable]:
    return partition, _crop_graph


def clear(mod: ModuleType) -> None:
    for name in ("_CACHE", "_LAYOUTS"):
        if hasattr(mod, name):
            getattr(mod, name).clear()


def time_point(mod: ModuleType, crop_graph: Callable, curve: str, n: int) -> tuple[int, int, float]:
    """(num_nodes, num_edges, seconds) of one point of `curve`."""
    num, coords, ei = make_graph(curve, n)
    edges = 0 if ei is None else int(ei.shape[1])
    if curve == "crops":
        s = STSeries(values=np.zeros((2, num, 1), np.float32), mask=np.ones((2, num, 1), bool), layout="graph",
                     edge_index=ei)
        clear(mod)

        def draw(j: int) -> None:
            c = crop_graph(s, CROP, np.random.default_rng(j))
            mod.partition_graph(c.num_nodes, K, c.coords, c.edge_index, c.edge_weight)

        draw(0)  # warm-up: the full graph's layout (now) is computed here, once
        start = time.perf_counter()
        for j in range(1, 11):
            draw(j)
        return num, edges, (time.perf_counter() - start) / 10
    best = np.inf
    for rep in range(3):
        clear(mod)
        start = time.perf_counter()
        mod.partition_graph(num, K, coords=coords, edge_index=ei)
        best = min(best, time.perf_counter() - start)
        if best >= 0.1:
            break
    return num, edges, best


def worker(version: str, curve: str, sizes: list[int]) -> None:
    """Child process: print one JSON line per point, as soon as it is measured. version: "now" or a
    git revision."""
    with tempfile.TemporaryDirectory() as tmp:
        mod, crop_graph = load_now() if version == "now" else load_before(version, Path(tmp))
        done: set[int] = set()
        for n in sizes:
            if curve == "crops" and n <= CROP:
                continue
            if make_graph(curve, n)[0] in done:  # sizes that round to a graph already timed
                print(json.dumps({"skip": n}), flush=True)
                continue
            num, edges, sec = time_point(mod, crop_graph, curve, n)
            done.add(num)
            print(json.dumps({"n": num, "edges": edges, "seconds": sec}), flush=True)


# ---------------------------------------------------------------------------------- locality
def locality_graphs() -> dict[str, tuple[int, np.ndarray, np.ndarray | None]]:
    """name -> (num_nodes, edge_index, true coords or None), the graphs of the locality table."""
    xy, geo, _ = random_geometric_graph(np.random.default_rng(0), 3000)
    n_grid, _, grid = make_graph("grid", 3600)
    mixed = np.random.default_rng(0).permutation(3000)[:2000].reshape(-1, 2).T  # 1,000 pairs, 1,000 isolated
    return {"geometric 3000": (3000, geo, xy), "grid 60x60": (n_grid, grid, None),
            "random 2000": (2000, make_graph("random", 2000)[2], None), "PEMS07": (883, pems07_edges(), None),
            "pairs + isolated 3000": (3000, mixed, None)}


def locality(n: int, ei: np.ndarray, patch_of: np.ndarray) -> tuple[float, float]:
    """(mean connected pieces per patch, fraction of edges cut) of the patch labels `patch_of`."""
    inside = patch_of[ei[0]] == patch_of[ei[1]]
    sub = sp.coo_matrix((np.ones(int(inside.sum())), tuple(ei[:, inside])), shape=(n, n))
    pieces = csgraph.connected_components(sub, directed=False)[0] / (patch_of.max() + 1)
    return pieces, float((~inside).mean())


def locality_rows(versions: list[str]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mods = {v: (load_now() if v == "now" else load_before(v, Path(tmp)))[0] for v in versions}
        for name, (n, ei, xy) in locality_graphs().items():
            for v, mod in mods.items():
                clear(mod)
                pieces, cut = locality(n, ei, mod.partition_graph(n, K, edge_index=ei).patch_of)
                rows.append({"graph": name, "version": v, "pieces_per_patch": pieces, "edges_cut": cut})
            if xy is not None:
                mod = mods["now"]
                pieces, cut = locality(n, ei, mod.partition_graph(n, K, coords=xy).patch_of)
                rows.append({"graph": name, "version": "RCB on true coords", "pieces_per_patch": pieces,
                             "edges_cut": cut})
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------- driver
def run_curve(version: str, curve: str, sizes: list[int], budget: float) -> list[dict]:
    """Points of one curve from a child process, each allowed `budget` seconds (the child's start too)."""
    cmd = [sys.executable, __file__, "--worker", version, curve, ",".join(map(str, sizes))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    rows: list[dict] = []
    todo = [n for n in sizes if not (curve == "crops" and n <= CROP)]
    while todo:
        if not sel.select(timeout=budget):  # this point ran past the budget: stop the curve here
            proc.kill()
            rows.append({"version": version, "curve": curve, "n": todo[0], "edges": "", "seconds": "",
                         "status": f"> {budget:g} s"})
            break
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{version} {curve}: worker died: {proc.stderr.read()[-2000:]}")
        point = json.loads(line)
        if "skip" not in point:
            rows.append({"version": version, "curve": curve, **point, "status": "ok"})
        todo.pop(0)
    proc.wait()
    return rows


def slope(rows: list[dict]) -> float:
    """Fitted exponent b of seconds ~ N^b over the measured points with N >= 1000 (nan if < 2)."""
    pts = [(r["n"], r["seconds"]) for r in rows if r["status"] == "ok" and r["n"] >= 1000]
    if len(pts) < 2:
        return float("nan")
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def fmt(r: dict | None) -> str:
    if r is None:
        return "-"
    return r["status"] if r["status"] != "ok" else f"{r['seconds'] * 1e3:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="seconds allowed per point (then the curve stops)")
    ap.add_argument("--max-n", type=int, default=100_000, help="largest N")
    ap.add_argument("--before", default="0cf8bd6", help="git revision of the 'before' code; 'none' to skip it")
    ap.add_argument("--curves", default=",".join(CURVES), help="comma-separated subset of the curves")
    ap.add_argument("--worker", nargs=3, metavar=("VERSION", "CURVE", "SIZES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], [int(x) for x in args.worker[2].split(",")])
        return
    versions = ["now"] if args.before == "none" else [args.before, "now"]
    curves = args.curves.split(",")
    for c in curves:
        if c not in CURVES:
            raise SystemExit(f"unknown curve {c!r}: choose from {', '.join(CURVES)}")
    sizes = [n for n in SIZES if n <= args.max_n]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    rows: list[dict] = []
    for curve in curves:
        for v in versions:
            got = run_curve(v, curve, sizes, args.budget)
            rows += got
            print(f"  {curve:14s} {v:4s} " + " ".join(f"{r['n']}:{fmt(r)}" for r in got), flush=True)

    host = socket.gethostname()
    print(f"\npartition_graph k={K}, cold (ms; crops: ms per draw of a {CROP}-node crop), host={host}, "
          f"now = {commit} + working tree, budget {args.budget:g} s per point, 1 thread")
    head = f"{'curve':14s} {'N':>7s} {'edges':>8s} " + " ".join(f"{v:>12s}" for v in versions)
    print(head)
    for curve in curves:
        ns = sorted({r["n"] for r in rows if r["curve"] == curve})
        for n in ns:
            by_v = {v: next((r for r in rows if r["curve"] == curve and r["version"] == v and r["n"] == n), None)
                    for v in versions}
            edges = next((r["edges"] for r in by_v.values() if r and r["edges"] != ""), "")
            print(f"{curve:14s} {n:7d} {str(edges):>8s} " + " ".join(f"{fmt(by_v[v]):>12s}" for v in versions))
    print(f"\n{'curve':14s} " + " ".join(f"{'slope ' + v:>12s}" for v in versions) + "   (seconds ~ N^slope, N >= 1000)")
    for curve in curves:
        print(f"{curve:14s} " + " ".join(
            f"{slope([r for r in rows if r['curve'] == curve and r['version'] == v]):12.2f}" for v in versions))

    write_csv(REPO / "benchmarks" / "results" / f"partition_{host}.csv", [
        {"version": r["version"], "commit": r["version"] if r["version"] != "now" else f"{commit}+worktree",
         "curve": r["curve"], "n": r["n"], "edges": r["edges"], "seconds": r["seconds"], "status": r["status"],
         "slope": f"{slope([q for q in rows if q['curve'] == r['curve'] and q['version'] == r['version']]):.3f}"}
        for r in rows])

    loc = locality_rows(versions)
    print(f"\nlocality, k={K}: connected pieces per patch (1.0 = every patch connected), fraction of edges cut")
    print(f"{'graph':22s} {'version':20s} {'pieces/patch':>12s} {'edges cut':>10s}")
    for r in loc:
        print(f"{r['graph']:22s} {r['version']:20s} {r['pieces_per_patch']:12.2f} {r['edges_cut']:10.3f}")
    write_csv(REPO / "benchmarks" / "results" / f"partition_locality_{host}.csv", loc)


if __name__ == "__main__":
    main()
