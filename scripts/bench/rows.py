"""Benchmark results -> rows of docs/benchmarks.md (area | what | figure | target | command | date).

The scripts print these so the table is pasted from a run, never typed from memory.
"""

from typing import Any

MIB = 2**20


def _date(report: dict[str, Any]) -> str:
    m = report["machine"]
    idle = "otherwise idle" if m["background_busy_before"] < 0.1 else "shared, busy"
    return (
        f"{m['date_utc'][:10]} ({idle}: {100 * m['background_busy_before']:.0f}% CPU busy "
        f"before, load {m['load_average_1_5_15'][0]:.1f})"
    )


def fl_vs_flower(report: dict[str, Any], command: str) -> list[str]:
    rows = []
    date = _date(report)
    for run in report["runs"]:
        cmp = run.get("comparison")
        if cmp is None:
            continue
        n, f, c = run["clients"], cmp["flower"], cmp["fedchain"]
        rounds = run["workload"]["rounds"]
        ct = run["fedchain"]["commit_timeout_ms"]
        time_ok = "met" if cmp["meets_time_target"] else "**missed**"
        acc_ok = "met" if cmp["meets_accuracy_target"] else "**missed**"
        rows.append(
            f"| FL end-to-end | round time, {n} clients, digits, {rounds} rounds: fedchain "
            f"(4 validators, RPC clients, commit timeout {ct} ms) / Flower 1.42 simulation "
            f"| median "
            f"{c['warm']['median_s']:.2f} s / {f['warm']['median_s']:.2f} s = "
            f"**{cmp['median_ratio']:.2f}x**; p95 {c['warm']['p95_s']:.2f} s / "
            f"{f['warm']['p95_s']:.2f} s = **{cmp['p95_ratio']:.2f}x** | <= 1.5x Flower: "
            f"{time_ok} | `{command}` | {date} |"
        )
        rows.append(
            f"| FL end-to-end | accuracy after {rounds} rounds, {n} clients: fedchain / Flower | "
            f"{100 * c['accuracy']:.2f}% / {100 * f['accuracy']:.2f}% "
            f"({cmp['accuracy_points']:+.2f} points) | within 1 point: {acc_ok} | "
            f"`{command}` | {date} |"
        )
    return rows


def scale(report: dict[str, Any], command: str) -> list[str]:
    rows = []
    date = _date(report)
    t = report.get("testnet")
    if t is not None and "error" in t:
        reason = " ".join(t["error"].split())[:600]
        rows.append(
            f"| FL at scale | {t['clients']:,} updates x {t['parameters']:,} params, 4-validator "
            f"testnet: last submission -> new model on every validator | did not finish: "
            f"{reason} | < 5 s: **missed** | `{command}` | {date} |"
        )
    elif t is not None:
        ok = "met" if t["last_submit_to_model_everywhere_s"] < 5.0 else "**missed**"
        rss = ", ".join(f"{b / MIB:.0f}" for b in t["validator_peak_rss_bytes"])
        rows.append(
            f"| FL at scale | {t['clients']:,} updates x {t['parameters']:,} params "
            f"({t['rule']}, int{t['delta_bits']}), 4-validator testnet: last submission -> new "
            f"model on every validator | {t['last_submit_to_model_everywhere_s']:.2f} s "
            f"(submitting all took {t['submit_s']:.2f} s); peak RSS per validator {rss} MiB | "
            f"< 5 s: {ok} | `{command}` | {date} |"
        )
    p = report.get("in_process")
    if p is not None:
        rows.append(
            f"| FL at scale | {p['clients']:,} updates x {p['parameters']:,} params "
            f"({p['rule']}), **in-process FL app only** (no network, no consensus): last block "
            f"incl. round close / {p['rule']} alone | {p['last_block_s']:.2f} s "
            f"({p['last_block_cpu_s']:.2f} CPU s) / {p['aggregate_only_s']:.2f} s; all "
            f"{p['blocks']} blocks {p['all_blocks_s']:.2f} s; peak RSS "
            f"{p['peak_rss_bytes'] / MIB:.0f} MiB (process incl. the 1,000 txs) | the app's "
            f"share of < 5 s | `{command}` | {date} |"
        )
    return rows
