"""Turn a pytest-benchmark JSON file into a markdown summary.

    python -m bench.summarize bench/results/<date>-<device>.json > bench/results/<date>-<device>.md

Kernel tables: per (op, mode, workload), each implementation's mean time, speedup vs
eager and vs torch.compile of the reference, achieved GB/s and (on GPU) the fraction of
peak memory bandwidth. Training steps: mean time per step and the 2d/3d ratio. Lifting:
the fastest round per mode, per clip and against lifting clip by clip.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def _fmt_ms(s: float) -> str:
    return f"{s * 1e3:.3f}"


def summarize(data: dict) -> str:
    machine = data.get("machine_info", {})
    lines = [f"# Benchmarks — {data.get('datetime', '')[:10]}", ""]
    devices = sorted({b["extra_info"].get("device", "?") for b in data["benchmarks"]})
    lines += [f"Device: {', '.join(devices)}; host: {machine.get('cpu', {}).get('brand_raw', machine.get('machine', '?'))}",
              f"torch {machine.get('torch_version', '')}".strip(), ""]
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    kernel_groups = sorted(g for g in groups if not g.startswith(("train-step", "lift-")))
    if kernel_groups:
        lines += ["## Kernels", "",
                  "| group | impl | mean ms | vs eager | vs compile | GB/s | % peak BW |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for g in kernel_groups:
            rows = sorted(groups[g], key=lambda b: b["stats"]["mean"])
            by_impl = {b["extra_info"]["impl"]: b["stats"]["mean"] for b in rows}
            for b in rows:
                m = b["stats"]["mean"]
                ei = b["extra_info"]
                eager = f"{by_impl['eager'] / m:.2f}x" if "eager" in by_impl else "-"
                comp = f"{by_impl['compile'] / m:.2f}x" if "compile" in by_impl else "-"
                peak = f"{100 * ei['fraction_of_peak_bw']:.1f}" if "fraction_of_peak_bw" in ei else "-"
                lines.append(f"| {g} | {ei['impl']} | {_fmt_ms(m)} | {eager} | {comp} | {ei.get('GB/s', '-')} | {peak} |")
        lines.append("")
    for g in sorted(x for x in groups if x.startswith("train-step")):
        rows = groups[g]
        lines += [f"## Training step ({g})", "", "| supervision | kernels | B x frames | model | mean ms |",
                  "|---|---|---|---|---:|"]
        t = {}
        for b in sorted(rows, key=lambda b: (b["extra_info"]["supervision"], b["extra_info"]["kernels"])):
            ei = b["extra_info"]
            t[(ei["supervision"], ei["kernels"])] = b["stats"]["mean"]
            lines.append(f"| {ei['supervision']} | {ei['kernels']} | {ei['B']} x {ei['frames']} | {ei['model']} | "
                         f"{_fmt_ms(b['stats']['mean'])} |")
        for k in ("fused", "reference"):
            if ("2d", k) in t and ("3d", k) in t:
                lines.append(f"\n2d / 3d step time with {k} kernels: {t[('2d', k)] / t[('3d', k)]:.3f}")
        for sup in ("2d-multistep", "2d-multistep-raw"):
            if (sup, "fused") in t and ("2d", "fused") in t:
                lines.append(f"\n{sup} / 2d step time (fused): {t[(sup, 'fused')] / t[('2d', 'fused')]:.3f}")
        lines.append("")
    lift_groups = sorted(g for g in groups if g.startswith("lift-"))
    if lift_groups:
        lines += ["## Lifting", "", "| group | mode | clips x frames | model | min s | s per clip | vs per-clip |",
                  "|---|---|---|---|---:|---:|---:|"]
        for g in lift_groups:
            rows = sorted(groups[g], key=lambda b: b["extra_info"]["mode"], reverse=True)
            per_clip = {b["extra_info"]["mode"]: b["stats"]["min"] for b in rows}.get("per-clip")
            for b in rows:
                ei, m = b["extra_info"], b["stats"]["min"]
                speed = f"{per_clip / m:.2f}x" if per_clip else "-"
                lines.append(f"| {g} | {ei['mode']} | {ei['clips']} x {ei['frames']} | {ei['model']} | {m:.3f} | "
                             f"{m / ei['clips']:.3f} | {speed} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(summarize(json.load(f)))
