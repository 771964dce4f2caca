"""The benchmark's markdown report: one table per part of a results dict (as written to the
JSON), made with the tools' shared :func:`dense_assign.tools.pipe_table` (``tabulate``).
``dev/gpu/summarize.py`` renders saved JSON files with it; :func:`spread_table` compares the
assignment part of several runs (``benchmark --spread``)."""

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
    paired = " timed in alternation with each row" if a.get("paired") else ""
    title = (
        f"\n### Label assignment, one {h}x{w} image, K={a['num_classes']}: median ms "
        f"(x detectron2 FCOS{paired}) / peak extra MB\n"
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


def spread_table(runs: List[Dict]) -> str:
    """Per assigner and M, over several runs' ``assign`` results (the JSONs' ``assign`` dicts),
    the range of detectron2 FCOS's time divided by the assigner's, each in its own run: how many
    times faster than detectron2 (below 1: slower). On a machine whose speed drifts between runs,
    the ratio within a run is what compares; its range over runs shows how far one run's value
    can be trusted. Rows and M are those of the first run that the others have too."""
    first = runs[0]
    ms = [m for m in first["num_gt"] if all(str(m) in r["rows"][0]["results"] for r in runs)]
    head = ["assigner"] + [f"M={m}" for m in ms]
    rows = []
    for row in first["rows"]:
        others = [next((x for x in r["rows"] if x["name"] == row["name"]), None) for r in runs]
        if any(o is None for o in others):
            continue
        cells = [row["name"]]
        for m in ms:
            speedups = sorted(1.0 / o["results"][str(m)]["ratio_to_d2_fcos"] for o in others)
            lo, hi = speedups[0], speedups[-1]
            cells.append(f"{lo:.2f}x" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}x")
        rows.append(cells)
    title = (
        f"\n### detectron2 FCOS's time / the assigner's, each run's own, over {len(runs)} runs "
        "(min-max)\n"
    )
    return "\n".join([title, pipe_table(head, rows)])


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
