"""summary.md of a GPU check folder (dev/gpu/run.sh): python dev/gpu/summarize.py OUT_DIR"""

import json
import os
import re
import sys


def _load(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _table(head, rows):
    from dense_assign.tools import pipe_table

    return pipe_table(head, rows)


def main(out):
    lines = ["# GPU check", ""]
    log = ""
    if os.path.exists(os.path.join(out, "log.txt")):
        with open(os.path.join(out, "log.txt"), errors="replace") as f:
            log = f.read()
    for pattern in (r"^python \d.*$", r"^CUDA: .*$"):
        m = re.search(pattern, log, re.M)
        if m:
            lines.append(f"- {m.group(0)}")
    tests = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|deselected).*?)\s*=*$", log, re.M)
    lines.append(f"- CUDA tests (`pytest -k 'cuda or amp'`): {tests[-1] if tests else 'no result'}")
    steps = re.findall(r"== (\w+): exit (\d+) after (\d+) s", log)
    if steps:
        lines.append("- steps: " + ", ".join(f"{n} exit {rc} ({s} s)" for n, rc, s in steps))
    lines.append("")

    amp = _load(out, "amp_train.json")
    if amp:
        lines += [f"## AMP training of the COCO R-50 configs ({amp['device']})", ""]
        rows = []
        for r in amp["rows"]:
            h, w = r["image_size"]
            rows.append(
                [
                    os.path.basename(r["config"]),
                    "ok" if r["passed"] else "FAILED: " + r.get("error", "non-finite loss"),
                    r.get("trainer", "-"),
                    f"{r['iters']} x {r['images']} of {h}x{w}",
                    f"{r['s_per_iter'] * 1e3:.0f}" if "s_per_iter" in r else "-",
                    (
                        f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}"
                        if "first_loss" in r
                        else "-"
                    ),
                    f"{r['peak_mem_gb']:.2f}" if r.get("peak_mem_gb") is not None else "-",
                ]
            )
        lines.append(
            _table(
                ["config", "result", "trainer", "iterations", "ms/iter", "total loss", "peak GiB"],
                rows,
            )
        )
        lines.append("")

    st = _load(out, "step_time.json")
    if st:
        lines += ["## One training iteration, before / after the deferred reads", ""]
        rows = []
        for label in ("before", "after"):
            r = st.get(label)
            if r:
                h, w = r["image_size"]
                rows.append(
                    [
                        label,
                        r["config"],
                        r["trainer"],
                        f"{r['images']} of {h}x{w}",
                        f"{r['ms_per_iter_median']:.1f}",
                        "-" if r["syncs_per_iter"] is None else str(r["syncs_per_iter"]),
                    ]
                )
        lines.append(
            _table(["code", "config", "trainer", "images", "ms/iter (median)", "syncs/iter"], rows)
        )
        for label in ("before", "after"):
            r = st.get(label)
            if r and r["syncs_by_line"]:
                lines += ["", f"Synchronizations of one iteration ({label}), by line:", ""]
                lines.append(
                    _table(["line", "count"], [[k, str(v)] for k, v in r["syncs_by_line"].items()])
                )
        lines.append("")

    from dense_assign.tools.bench.report import markdown

    for name in ("benchmark_assign.json", "benchmark_models.json", "benchmark_models_fp32.json"):
        b = _load(out, name)
        if b:
            lines += [f"## Benchmark ({name})", "", markdown(b)]
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
