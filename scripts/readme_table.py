"""README's zero-shot table (and the model card's evaluation section) from a release's evaluation JSON.

    python scripts/readme_table.py checkpoints/unist-tiny-6

Reads <release>/eval/{test,test_video,validation}/results.json and <release>/eval/imputation/results.json (written by
scripts/eval_release.sh) and replaces the text between the markers `<!-- zeroshot-table -->` and
`<!-- /zeroshot-table -->` in README.md and in <release>/MODEL_CARD.md. Peers fitted on a subset of locations
are compared with unist on the same locations (`vs unist`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- zeroshot-table -->", "<!-- /zeroshot-table -->"
CLASSICAL = ("last_value", "seasonal_naive", "peer_auto_ets", "peer_auto_theta", "peer_mstl")
COLUMNS = [("unist", "unist"), ("unist_anchor", "rule only"), ("ensemble4", "4-cand. ensemble"),
           ("last_value", "last value"), ("seasonal_naive", "seasonal naive"), ("peer_auto_ets", "AutoETS"),
           ("peer_auto_theta", "AutoTheta"), ("peer_mstl", "MSTL"), ("peer_seasonal_naive", "SN (sf)")]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _mae(metrics: dict | None) -> float | None:
    """The horizon-averaged MAE of a metrics dict (`unist.evaluation.metrics.point_metrics`)."""
    return None if not metrics or "mae" not in metrics else metrics["mae"]["avg"]


def cell(models: dict, name: str) -> str:
    """MAE of `name`, with unist's MAE on the same locations when `name` was scored on a subset."""
    m = models.get(name)
    if m is None or "metrics" not in m:
        return "-"
    text = _fmt(_mae(m["metrics"]))
    ref = m.get("reference_unist_same_locations")
    if ref is not None and name != "unist":
        text += f" (vs {_fmt(_mae(ref))})"
    return text


def verdict(models: dict) -> str:
    """Whether unist's MAE is below each classical baseline's (on the baseline's own locations where it has a subset)."""
    if "unist" not in models:
        return "-"
    out = []
    for name in CLASSICAL:
        m = models.get(name)
        if m is None or "metrics" not in m:
            continue
        ref = m.get("reference_unist_same_locations")
        ours = _mae(ref or models["unist"]["metrics"])
        out.append("✓" if ours < _mae(m["metrics"]) else "✗")
    return "".join(out)


def table(path: Path, role: str) -> list[str]:
    res = json.loads(path.read_text())
    rows = []
    for r in res["results"]:
        d, w, models = r["dataset"], r["windows"], r["models"]
        rows.append(f"| {d['name']} | {role} | {d['layout']} | {r['protocol']['name']} {w.get('context_used', r['protocol']['context'])}/"
                    f"{r['protocol']['horizon']} | {w['count']} | " + " | ".join(cell(models, k) for k, _ in COLUMNS)
                    + f" | {verdict(models)} |")
    return rows


def imputation(path: Path) -> list[str]:
    if not path.is_file():
        return []
    res = json.loads(path.read_text())
    lines = ["", "Imputation (MAE on artificially hidden observed points; `python eval/imputation.py`):", "",
             "| dataset | scenario | unist | linear in time | spatial mean | kNN mean | LOCF |", "|---|---|---|---|---|---|---|"]
    for r in res.get("results", []):
        for scen, s in r.get("scenarios", {}).items():
            meth = s.get("methods", {})
            get = lambda k: _fmt(meth.get(k, {}).get("mae"))  # noqa: E731
            lines.append(f"| {r['dataset']['name']} | {scen} | {get('unist')} | {get('linear_time')} | {get('spatial_mean')} | "
                         f"{get('knn_mean')} | {get('locf')} |")
    return lines


def build(release: Path) -> str:
    ev = release / "eval"
    head = ("| dataset | role | layout | protocol ctx/h | windows | " + " | ".join(t for _, t in COLUMNS)
            + " | beats last, SN, ETS, Theta, MSTL |")
    lines = [f"Zero-shot MAE of `{release.name}` (made by `bash scripts/eval_release.sh {release}`; full tables in "
             f"`{release}/eval/*/results.md`). Peers fitted on a subset of locations show unist's MAE on the same "
             "locations in brackets.", "", head, "|" + "---|" * (head.count("|") - 1)]
    for role, sub in (("test (blind)", "test"), ("test (blind)", "test_video"), ("validation", "validation")):
        p = ev / sub / "results.json"
        if p.is_file():
            lines += table(p, role)
    lines += imputation(ev / "imputation" / "results.json")
    return "\n".join(lines)


def replace_between(path: Path, text: str) -> None:
    body = path.read_text()
    if START not in body:
        body = body.rstrip() + f"\n\n## Zero-shot evaluation\n\n{START}\n{END}\n"
    pre, rest = body.split(START, 1)
    post = rest.split(END, 1)[1]
    path.write_text(f"{pre}{START}\n{text}\n{END}{post}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    release = Path(argv[0])
    text = build(release)
    for target in (REPO / "README.md", release / "MODEL_CARD.md"):
        if target.is_file():
            replace_between(target, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
