"""The benchmark's markdown report: one table per part of a results dict (as written to the
JSON), made with the tools' shared :func:`dense_assign.tools.pipe_table` (``tabulate``).
``dev/gpu/summarize.py`` renders saved JSON files with it."""

from typing import Dict, List

from .. import pipe_table


def fmt(value, pattern: str) -> str:
    """``value`` formatted by ``pattern``, or "-" when it was not measured (None)."""
    return "-" if value is None else pattern.format(value)


def _assign_table(a: Dict) -> List[str]:
    h, w = a["image_size"]
    head = ["assigner", "source", "priors"] + [f"M={m}" for m in a["num_gt"]]
    rows = []
    for row in a["rows"]:
        cells = [row["name"], row["source"], str(row["num_priors"])]
        for m in a["num_gt"]:
            r = row["results"][str(m)]
            cells.append(
                f"{r['time_ms']:.2f} ({r['ratio_to_d2_fcos']:.2f}x) / "
                f"{fmt(r['peak_mem_mb'], '{:.1f}')}"
            )
        rows.append(cells)
    title = (
        f"\n### Label assignment, one {h}x{w} image, K={a['num_classes']}: median ms "
        f"(x detectron2 FCOS) / peak extra MB\n"
    )
    return [title, pipe_table(head, rows)] + _profile_tables(a)


def _profile_tables(a: Dict) -> List[str]:
    """A table per profiled case (``--profile``): its top operators by self time."""
    out = []
    for row in a["rows"]:
        prof = row.get("profile")
        if not prof:
            continue
        out.append(
            f"\n#### Where the time goes: {row['name']}, M={prof['num_gt']} (one profiled call, "
            f"{prof['total_ms']:.1f} ms of {prof['clock']} self time)\n"
        )
        head = ["op", "self ms", "share", "calls"]
        cells = [
            [op["op"], f"{op['self_ms']:.2f}", f"{100 * op['share']:.1f}%", str(op["calls"])]
            for op in prof["ops"]
        ]
        out.append(pipe_table(head, cells))
    return out


def _train_table(t: Dict) -> List[str]:
    h, w = t["image_size"]
    amp = ", forward in mixed precision (autocast fp16)" if t.get("amp") else ""
    head = ["model", "ms", "x detectron2 FCOS", "peak extra MB"]
    rows = []
    for row in t["rows"]:
        if row.get("error"):
            rows.append([row["name"], f"failed: {row['error']}", "-", "-"])
            continue
        rows.append(
            [
                row["name"],
                f"{row['time_ms']:.1f}",
                fmt(row["ratio_to_d2_fcos"], "{:.2f}"),
                fmt(row["peak_mem_mb"], "{:.0f}"),
            ]
        )
    title = (
        f"\n### Training step (forward + backward), {t['images']} images of {h}x{w}, "
        f"{t['num_gt']} GT each{amp}\n"
    )
    return [title, pipe_table(head, rows)]


def _inference_table(i: Dict) -> List[str]:
    h, w = i["image_size"]
    head = ["model", "images/s", "ms", "x detectron2 FCOS (time)", "peak extra MB"]
    rows = []
    for row in i["rows"]:
        if row.get("error"):
            rows.append([row["name"], f"failed: {row['error']}", "-", "-", "-"])
            continue
        rows.append(
            [
                row["name"],
                f"{row['images_per_s']:.2f}",
                f"{row['time_ms']:.1f}",
                fmt(row["ratio_to_d2_fcos"], "{:.2f}"),
                fmt(row["peak_mem_mb"], "{:.0f}"),
            ]
        )
    title = f"\n### Inference, {i['images']} image(s) of {h}x{w} per call\n"
    return [title, pipe_table(head, rows)]


def markdown(results: Dict) -> str:
    """The markdown tables of a results dict (as written to the JSON): a line on the device and
    the memory method, then a table for each part it has."""
    out = [
        f"Device: {results['device']} ({results['device_name']}), torch {results['torch']}, "
        f"{results['threads']} threads. Memory: {results['memory_method']}."
    ]
    for key, table in (
        ("assign", _assign_table),
        ("train", _train_table),
        ("inference", _inference_table),
    ):
        if results.get(key):
            out += table(results[key])
    return "\n".join(out) + "\n"
