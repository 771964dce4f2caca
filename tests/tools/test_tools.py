"""Tests of the evidence tools (``python -m dense_assign.tools.<name>``) on CPU.

The tools run in this process (``main(argv)``), except one ``python -m`` subprocess for the
command line itself, on the generated ``synthetic_tiny`` dataset, registered for this module under a
temporary ``DETECTRON2_DATASETS`` (the tests of train_net.py give their subprocesses the same).
"""

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

import dense_assign.modeling  # noqa: F401  (registers every assigner)
from dense_assign.registry import ASSIGNER_REGISTRY

from ..helpers import make_priors, markdown_rows

ROOT = Path(__file__).resolve().parents[2]
TINY_FCOS = str(ROOT / "tests" / "configs" / "tiny_fcos.py")
AUTOASSIGN = str(ROOT / "configs" / "Synthetic-Detection" / "autoassign_R_18_FPN.py")
TINY_VAL = "synthetic_tiny_val"


# ------------------------------------------------------------------------ visualize_assignment
def _assert_pngs(paths, num, size):
    assert len(paths) == num
    for path in paths:
        assert os.path.isfile(path) and path.endswith(".png")
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert im.size == size
            # a drawing, not an empty canvas: the image and coloured markers
            assert len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 1000


def test_visualize_fcos_writes_one_png_per_image(synthetic_datasets, tmp_path):
    from dense_assign.tools import visualize_assignment as vis

    out = tmp_path / "vis_fcos"
    paths = vis.main(["--config-file", TINY_FCOS, "--num-images", "2", "--output", str(out)])
    assert vis.figure_size_px(5) == (1440, 800)  # overview + P3..P7, 3 columns
    _assert_pngs(paths, 2, (1440, 800))
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in paths)
    assert [os.path.basename(p)[:4] for p in sorted(paths)] == ["000_", "001_"]


def test_visualize_autoassign_uses_soft_weights(synthetic_datasets, tmp_path):
    from dense_assign import tools
    from dense_assign.tools import visualize_assignment as vis

    out = tmp_path / "vis_autoassign"
    args = ["--config-file", AUTOASSIGN, "--dataset", TINY_VAL, "--num-images", "2"]
    paths = vis.main(args + ["--output", str(out)])
    _assert_pngs(paths, 2, (1440, 800))

    # what is drawn: every candidate pair, weights = w+ relative to the GT's largest
    cfg = tools.load_tool_config(AUTOASSIGN)
    model = tools.load_model(cfg)
    inputs = next(tools.iter_mapped_inputs(cfg, TINY_VAL, 1))
    assignment = tools.assign_image(model, inputs)
    overlay = vis._Overlay(model, assignment)
    pairs = assignment.result.pairwise
    assert overlay.kind == "autoassign" and overlay.weighted
    assert torch.equal(overlay.pts, pairs["point_idx"].cpu())
    top = torch.zeros(len(assignment.gt)).scatter_reduce(0, overlay.pt_gts, overlay.weights, "amax")
    covered = torch.unique(overlay.pt_gts)
    assert torch.allclose(top[covered], torch.ones(len(covered)))
    # one 1-sigma ellipse per GT and level
    assert len(overlay.ellipses) == len(assignment.gt) * assignment.priors.num_levels
    assert "RANDOMLY INITIALIZED" in vis._title(
        vis.build_parser().parse_args(args + ["--output", str(out)]), model, inputs, assignment
    )


# ------------------------------------------------------------------------------ center_prior
def test_center_prior_draws_every_class_and_writes_the_parameters(synthetic_datasets, tmp_path):
    # a checkpoint with known mu, sigma: the tool must report exactly those
    from dense_assign import tools
    from dense_assign.tools import center_prior as cp

    cfg = tools.load_tool_config(AUTOASSIGN)
    model = tools.load_model(cfg)
    k = model.assigner.mu.shape[0]
    with torch.no_grad():
        model.assigner.mu.copy_(torch.arange(2 * k, dtype=torch.float32).reshape(k, 2) / 10)
        model.assigner.sigma.fill_(0.5)
        model.assigner.sigma[0, 1] = -2.0  # G depends on sigma^2: reported as |sigma|
    ckpt = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, ckpt)

    out = tmp_path / "cp" / "priors.png"
    path = cp.main(["--config-file", AUTOASSIGN, "--checkpoint", str(ckpt), "--output", str(out)])
    assert path == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG" and len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 1000
    table = json.loads((tmp_path / "cp" / "priors.json").read_text())["priors"]
    assert len(table) == k
    assert table[0]["class"] == "rectangle"  # names from the training dataset's metadata
    assert table[3]["mu"] == pytest.approx([0.6, 0.7])
    assert table[0]["sigma"] == pytest.approx([0.5, 2.0])

    # the drawn map is the Gaussian of Eq. 2, peaking at mu
    g = cp.prior_map(torch.tensor([1.0, -0.5]), torch.tensor([0.5, 2.0]), extent=3.0, size=61)
    row, col = divmod(int(g.argmax()), 61)
    assert (col - 30) / 10 == pytest.approx(1.0) and (row - 30) / 10 == pytest.approx(-0.5)
    assert float(g.max()) == pytest.approx(1.0)


def test_center_prior_refuses_an_assigner_without_one(synthetic_datasets, tmp_path, capsys):
    from dense_assign.tools import center_prior as cp

    with pytest.raises(SystemExit) as e:
        cp.main(["--config-file", TINY_FCOS, "--output", str(tmp_path / "x.png")])
    assert e.value.code == 2
    assert "no learned center prior" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------------------- benchmark
def test_benchmark_assign_tiny(tmp_path, capsys):
    from dense_assign.tools import benchmark
    from dense_assign.tools.bench import D2_FCOS, D2_RETINANET

    out = tmp_path / "bench.json"
    argv = [
        "--image-size",
        "256",
        "320",
        "--num-gt",
        "1",
        "10",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--parts",
        "assign",
        "--output",
        str(out),
    ]
    benchmark.main(argv)
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["parts"] == ["assign"] and "train" not in data and "inference" not in data
    assert data["detectron2_fcos_matching"] in ("match_anchors", "_match_anchors")
    rows = {r["name"]: r for r in data["assign"]["rows"]}
    registered = {name for name, _ in ASSIGNER_REGISTRY}
    assert set(rows) == registered | {D2_FCOS, D2_RETINANET}
    # 256x320 (padded: 256x320) points P3-P7: 32*40 + 16*20 + 8*10 + 4*5 + 2*3
    assert rows["FCOSAssigner"]["num_priors"] == rows[D2_FCOS]["num_priors"] == 1706
    assert rows["MaxIoUAssigner"]["num_priors"] == rows[D2_RETINANET]["num_priors"] == 9 * 1706
    for name, row in rows.items():
        assert set(row["results"]) == {"1", "10"}, name
        for res in row["results"].values():
            assert res["time_ms"] > 0, name
            assert res["peak_mem_mb"] is not None and res["peak_mem_mb"] > 0, name
        if name in registered:  # the assigner's own flag, as the benchmark saw it
            assigner = ASSIGNER_REGISTRY.get(name)(num_classes=3)
            expected = bool(getattr(assigner, "prediction_aware", False))
            assert row["prediction_aware"] == expected, name
    for res in rows[D2_FCOS]["results"].values():
        assert res["ratio_to_d2_fcos"] == 1.0
    fcos = rows["FCOSAssigner"]["results"]["10"]
    d2 = rows[D2_FCOS]["results"]["10"]
    assert fcos["ratio_to_d2_fcos"] == pytest.approx(fcos["time_ms"] / d2["time_ms"])
    # the markdown table: a row per assigner and for detectron2's FCOS / RetinaNet
    table_rows = markdown_rows(printed)
    assert table_rows[0] == ["assigner", "source", "priors", "M=1", "M=10"]
    names = {cells[0] for cells in table_rows[1:]}
    assert names == set(rows)


def test_benchmark_selected_assigners_and_their_profile(tmp_path, capsys):
    """--assigners keeps those rows (detectron2's always run: the ratios divide by its FCOS);
    --profile TOP adds, for each of ours, the TOP operators of one call at the largest M by self
    time, in the JSON and as a table; an unknown name is refused with the registered ones."""
    from dense_assign.tools import benchmark
    from dense_assign.tools.bench import D2_FCOS, D2_RETINANET

    out = tmp_path / "bench.json"
    common = ["--image-size", "256", "320", "--repeats", "1", "--warmup", "0", "--no-memory"]
    argv = common + ["--num-gt", "1", "3", "--parts", "assign", "--output", str(out)]
    benchmark.main(argv + ["--assigners", "FCOSAssigner", "SAPDAssigner", "--profile", "4"])
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    rows = {r["name"]: r for r in data["assign"]["rows"]}
    assert set(rows) == {"FCOSAssigner", "SAPDAssigner", D2_FCOS, D2_RETINANET}
    assert data["assign"]["profile_top"] == 4
    for name in ("FCOSAssigner", "SAPDAssigner"):
        prof = rows[name]["profile"]
        assert prof["num_gt"] == 3 and prof["clock"] == "cpu" and prof["total_ms"] > 0
        assert 1 <= len(prof["ops"]) <= 4
        shares = [op["share"] for op in prof["ops"]]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
        assert all(op["calls"] >= 1 and op["op"] for op in prof["ops"])
        assert f"#### Where the time goes: {name}, M=3" in printed
    assert "profile" not in rows[D2_FCOS] and "profile" not in rows[D2_RETINANET]
    with pytest.raises(SystemExit):
        benchmark.main(argv + ["--assigners", "NoSuchAssigner"])
    err = capsys.readouterr().err
    assert "--assigners: NoSuchAssigner not registered" in err and "FCOSAssigner" in err

    # --spread measures nothing: per assigner and M, the range over the runs of detectron2
    # FCOS's time / the assigner's (here a second run with FCOSAssigner twice as slow)
    second = json.loads(out.read_text())
    for row in second["assign"]["rows"]:
        for res in row["results"].values():
            res["ratio_to_d2_fcos"] *= 2 if row["name"] == "FCOSAssigner" else 1
    out2 = tmp_path / "bench2.json"
    out2.write_text(json.dumps(second))
    benchmark.main(["--spread", str(out), str(out2)])
    printed = capsys.readouterr().out
    ratio = rows["FCOSAssigner"]["results"]["3"]["ratio_to_d2_fcos"]
    line = next(x for x in printed.splitlines() if x.startswith("| FCOSAssigner"))
    assert line.rstrip(" |").endswith(f"{1 / (2 * ratio):.2f}-{1 / ratio:.2f}x")
    assert next(x for x in printed.splitlines() if x.startswith(f"| {D2_FCOS}")).count("1.00x") == 2
    with pytest.raises(SystemExit):
        benchmark.main(["--spread", str(out), str(tmp_path / "missing.json")])
    err = capsys.readouterr().err
    assert "--spread: cannot read" in err and "missing.json" in err


def test_benchmark_paired_times_each_row_next_to_detectron2(tmp_path, capsys):
    """--paired: each row's calls alternate with detectron2 FCOS's on the same boxes, and the
    ratio divides the two medians of that series (kept in the JSON); detectron2 FCOS's own row
    is timed alone."""
    from dense_assign.tools import benchmark
    from dense_assign.tools.bench import D2_FCOS, D2_RETINANET
    from dense_assign.tools.bench.timing import median_times

    calls = []
    a, b = median_times(
        [lambda: calls.append("fn"), lambda: calls.append("ref")], "cpu", repeats=3, warmup=1
    )
    assert calls == ["fn", "ref"] * 4 and a >= 0 and b >= 0

    out = tmp_path / "bench.json"
    argv = ["--image-size", "256", "320", "--repeats", "2", "--warmup", "0", "--no-memory"]
    argv += ["--num-gt", "1", "3", "--parts", "assign", "--assigners", "FCOSAssigner"]
    benchmark.main(argv + ["--paired", "--output", str(out)])
    assert "x detectron2 FCOS timed in alternation with each row" in capsys.readouterr().out
    data = json.loads(out.read_text())["assign"]
    assert data["paired"] is True
    rows = {r["name"]: r for r in data["rows"]}
    for name in ("FCOSAssigner", D2_RETINANET):
        for res in rows[name]["results"].values():
            assert res["d2_fcos_paired_ms"] > 0
            assert res["ratio_to_d2_fcos"] == pytest.approx(
                res["time_ms"] / res["d2_fcos_paired_ms"]
            )
    for res in rows[D2_FCOS]["results"].values():
        assert "d2_fcos_paired_ms" not in res and res["ratio_to_d2_fcos"] == 1.0


def test_benchmark_train_and_inference_rows(tmp_path):
    """The model parts, tiny: one row per config plus detectron2's FCOS and RetinaNet, ratios
    to detectron2's FCOS, and images/s consistent with the time per call."""
    from dense_assign.tools import benchmark
    from dense_assign.tools.bench import D2_FCOS, D2_RETINANET

    out = tmp_path / "bench_models.json"
    benchmark.main(
        [
            "--parts",
            "train",
            "inference",
            "--train-configs",
            "COCO-Detection/fcos_R_50_FPN_1x.py",
            "--train-size",
            "128",
            "128",
            "--inference-size",
            "128",
            "128",
            "--train-repeats",
            "1",
            "--warmup",
            "0",
            "--no-memory",
            "--output",
            str(out),
        ]
    )
    data = json.loads(out.read_text())
    for part in ("train", "inference"):
        rows = {r["name"]: r for r in data[part]["rows"]}
        assert set(rows) == {"fcos_R_50_FPN_1x", D2_FCOS, D2_RETINANET}
        assert rows[D2_FCOS]["ratio_to_d2_fcos"] == 1.0
        for row in rows.values():
            assert row["time_ms"] > 0 and row["peak_mem_mb"] is None  # --no-memory
            assert row["ratio_to_d2_fcos"] == pytest.approx(
                row["time_ms"] / rows[D2_FCOS]["time_ms"]
            )
            if part == "inference":
                assert row["images_per_s"] == pytest.approx(1000.0 / row["time_ms"])


def test_peak_extra_memory_is_the_allocation_peak():
    from dense_assign.tools.bench.timing import peak_extra_memory

    def fn():
        a = torch.ones(1 << 20, dtype=torch.uint8)  # 1 MiB
        b = torch.ones(3 << 20, dtype=torch.uint8)  # + 3 MiB: peak 4 MiB
        del a, b
        return torch.ones(2 << 20, dtype=torch.uint8)  # 2 MiB, below the peak

    assert peak_extra_memory(fn, "cpu") == 4 << 20


# --------------------------------------------------------------------------------- compare
def _fake_run(folder: Path, ap: float, times, iterations):
    folder.mkdir(parents=True)
    metrics = {"AP": ap, "AP50": ap + 20, "AP75": ap - 5, "APs": None, "APm": ap / 2, "APl": ap * 2}
    (folder / "final_results.json").write_text(json.dumps({"bbox": metrics}))
    lines = [{"iteration": it, "time": t, "total_loss": 1.0} for it, t in zip(iterations, times)]
    lines.append({"iteration": iterations[-1], "bbox/AP": ap})  # the evaluation's line
    (folder / "metrics.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return metrics


def test_compare_trains_two_configs_at_a_time(synthetic_datasets, tmp_path):
    """--jobs 2 --seeds 0 1: the four tiny runs train two at a time in subprocesses, with their
    console output in <config>/seed<S>.log; the table has a row per run and a mean ± std line per
    config, with the budget, seeds and machine written down; a second call with --skip-existing
    trains nothing and reports the same numbers."""
    from dense_assign.tools import compare

    second = tmp_path / "tiny_fcos_copy.py"
    second.write_text(Path(TINY_FCOS).read_text())
    out = tmp_path / "cmp"
    argv = [
        "--configs",
        TINY_FCOS,
        str(second),
        "--max-iter",
        "4",
        "--jobs",
        "2",
        "--seeds",
        "0",
        "1",
        "--output",
        str(out),
    ]
    paths = compare.main(argv)
    report = json.loads(Path(paths["json"]).read_text())
    assert report["jobs"] == 2 and report["max_iter"] == 4 and report["seeds"] == [0, 1]
    assert [(r["name"], r["seed"]) for r in report["runs"]] == [
        ("tiny_fcos", 0),
        ("tiny_fcos", 1),
        ("tiny_fcos_copy", 0),
        ("tiny_fcos_copy", 1),
    ]
    for row in report["runs"]:
        assert "error" not in row, row
        assert row["iterations"] == 4 and row["AP"] is not None  # (time is logged from iter 3)
        assert row["wall_s"] > 0
        assert (out / row["name"] / f"seed{row['seed']}.log").is_file()
        assert (out / row["name"] / f"seed{row['seed']}" / "final_results.json").is_file()
    summary = {g["name"]: g for g in report["configs_summary"]}
    assert summary["tiny_fcos"]["n"] == 2 and summary["tiny_fcos"]["seeds"] == [0, 1]
    aps = [r["AP"] for r in report["runs"] if r["name"] == "tiny_fcos"]
    assert summary["tiny_fcos"]["AP"] == pytest.approx(sum(aps) / 2)
    md = Path(paths["md"]).read_text()
    assert "Budget: train.max_iter=4, train.seed in {0 1}" in md and "run(s) at a time" in md
    assert "## Mean ± std over seeds" in md
    assert compare.worker_threads(2) == max(1, (os.cpu_count() or 1) // 2)

    mtimes = {p: p.stat().st_mtime for p in out.glob("*/seed*/final_results.json")}
    again = json.loads(Path(compare.main(argv + ["--skip-existing"])["json"]).read_text())
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes  # nothing retrained
    assert [r["AP"] for r in again["runs"]] == [r["AP"] for r in report["runs"]]


def test_compare_selections_discover_the_converge_configs():
    """The converging benchmark's configs are found in their folder, the ablations in its
    ablations/ subfolder: adding a config there needs no list edited."""
    from dense_assign.model_zoo import config_root
    from dense_assign.tools import compare

    main = compare.selection_configs("converge")
    ablations = compare.selection_configs("converge-ablations")
    on_disk = sorted(os.listdir(os.path.join(config_root(), "Synthetic-Converge")))
    assert [os.path.basename(c) for c in main] == [f for f in on_disk if f.endswith(".py")]
    assert "Synthetic-Converge/fcos_R_18_FPN.py" in main
    assert all(c.startswith("Synthetic-Converge/ablations/") for c in ablations) and ablations
    assert compare.selection_configs("synthetic") == list(compare.DEFAULT_CONFIGS)


def test_compare_aggregates_seeds_and_judges_claims(tmp_path):
    """Mean and sample std over seeds per config, and the claims' verdicts from them."""
    from dense_assign.tools import claims, compare

    rows = []
    for name, aps in (
        ("fcos_R_18_FPN", [40.0, 41.0, 42.0]),
        ("atss_fcos_R_18_FPN", [44.0, 45.0, 46.0]),
        ("autoassign_R_18_FPN", [30.0, 31.0, 32.0]),
    ):
        for seed, ap in enumerate(aps):
            rows.append({"name": name, "seed": seed, "AP": ap, "AP75": ap, "wall_s": 100.0})
    rows.append({"name": "fcos_R_18_FPN", "seed": 3, "error": "exit code 1"})
    groups = {g["name"]: g for g in compare.aggregate(rows)}
    assert groups["fcos_R_18_FPN"]["AP"] == pytest.approx(41.0)
    assert groups["fcos_R_18_FPN"]["AP_std"] == pytest.approx(1.0)
    assert groups["fcos_R_18_FPN"]["n"] == 3 and groups["fcos_R_18_FPN"]["failed"] == [3]
    results = {r["text"]: r for r in claims.evaluate_claims(list(groups.values()))}
    atss = results["ATSS assignment beats FCOS's (FCOS + ATSS vs FCOS)"]
    assert atss["difference"] == pytest.approx(4.0)
    assert atss["stderr"] == pytest.approx((2 / 3) ** 0.5)
    assert atss["verdict"] == "reproduced"
    assert results["AutoAssign matches or beats FCOS"]["verdict"] == "reversed"
    assert len(results) == 3  # the claims whose two configs ran
    close = claims.evaluate_claim(
        claims.Claim("x", "close", "a", "b", kind="close", tolerance=1.0),
        {"AP": 40.0, "AP_std": 5.0, "n": 3},
        {"AP": 40.5, "AP_std": 5.0, "n": 3},
    )
    assert close["verdict"] == "reproduced"
    noisy = claims.evaluate_claim(
        claims.Claim("x", "beats", "a", "b"),
        {"AP": 41.0, "AP_std": 2.0, "n": 3},
        {"AP": 40.0, "AP_std": 2.0, "n": 3},
    )
    assert noisy["verdict"] == "within noise"
    table = claims.claims_table(list(results.values()))
    atss = next(cells for cells in markdown_rows(table) if cells[0] == "ATSS")
    assert atss[1].startswith("ATSS assignment beats FCOS's") and atss[-2:] == [
        "+4.00 ± 0.82",
        "reproduced",
    ]


def test_compare_collect_only(tmp_path, capsys):
    # in this process (compare's `python -m` entry runs in test_compare_trains_two_configs_at_a_time)
    from dense_assign.tools import compare

    a = _fake_run(tmp_path / "runs" / "fcos", 12.5, [0.5, 0.7], [19, 39])
    b = _fake_run(tmp_path / "runs" / "atss", 14.0, [0.25, 0.25, 0.25], [9, 19, 29])
    out = tmp_path / "compare"
    argv = ["--collect-only", str(tmp_path / "runs" / "fcos"), str(tmp_path / "runs" / "atss")]
    compare.main(argv + ["--output", str(out)])
    stdout = capsys.readouterr().out

    data = json.loads((out / "results.json").read_text())
    assert data["mode"] == "collected"
    runs = {r["name"]: r for r in data["runs"]}
    assert list(runs) == ["fcos", "atss"]
    for name, metrics in (("fcos", a), ("atss", b)):
        for key, value in metrics.items():
            assert runs[name][key] == value, (name, key)
    # 20 iterations at 0.5 s + 20 at 0.7 s; 3 x 10 at 0.25 s
    assert runs["fcos"]["train_time_s"] == pytest.approx(24.0)
    assert runs["fcos"]["iterations"] == 40
    assert runs["fcos"]["s_per_iter"] == pytest.approx(0.6)
    assert runs["atss"]["train_time_s"] == pytest.approx(7.5)
    assert runs["fcos"]["ap_curve"] == [[40, 12.5]]  # the evaluation line, at iteration 39 + 1

    md = (out / "results.md").read_text()
    md_rows = markdown_rows(md)
    assert "fcos - 12.5 32.5 7.5 - 6.2 25.0 40 24.0 0.600 -".split() in md_rows
    assert "atss - 14.0 34.0 9.0 - 7.0 28.0 30 7.5 0.250 -".split() in md_rows
    assert ["fcos", "1", "12.5", "32.5", "7.5", "-", "6.2", "25.0", "12.5 @40", "-", "0.600"] in (
        md_rows
    )
    assert any(cells[:3] == ["fcos", "1", "12.5"] for cells in markdown_rows(stdout))
    with Image.open(out / "results.png") as im:
        assert im.format == "PNG" and im.size[0] >= 600 and im.size[1] == 450


def test_compare_collect_only_groups_seed_folders(tmp_path):
    """compare's own layout <config>/seed<S>: collected as seeds of one config, mean ± std."""
    from dense_assign.tools import compare

    for seed, ap in ((0, 10.0), (1, 12.0)):
        _fake_run(tmp_path / "runs" / "fcos_R_18_FPN" / f"seed{seed}", ap, [0.5], [19])
    _fake_run(tmp_path / "runs" / "plain", 3.0, [0.5], [19])
    for seed, per_gt in ((0, 4.0), (1, 6.0)):  # the assignment statistics of the last log line
        stats = {
            "iteration": 19,
            "assign/pos_per_gt_mean": per_gt,
            "assign/pos_frac_level0": 0.75,
            "assign/pos_frac_level1": 0.25,
            "assign/gt_without_pos_frac": 0.1,
        }
        with open(tmp_path / "runs" / "fcos_R_18_FPN" / f"seed{seed}" / "metrics.json", "a") as f:
            f.write(json.dumps(stats) + "\n")
    dirs = sorted(str(p) for p in (tmp_path / "runs").glob("fcos_R_18_FPN/seed*"))
    paths = compare.main(
        ["--collect-only", *dirs, str(tmp_path / "runs" / "plain"), "--output", str(tmp_path / "o")]
    )
    report = json.loads(Path(paths["json"]).read_text())
    assert [(r["name"], r["seed"]) for r in report["runs"]] == [
        ("fcos_R_18_FPN", 0),
        ("fcos_R_18_FPN", 1),
        ("plain", None),
    ]
    fcos = report["configs_summary"][0]
    assert fcos["n"] == 2 and fcos["AP"] == pytest.approx(11.0)
    assert fcos["AP_std"] == pytest.approx(2**0.5)
    md = Path(paths["md"]).read_text()
    md_rows = markdown_rows(md)
    assert any(cells[:3] == ["fcos_R_18_FPN", "2", "11.0 ± 1.4"] for cells in md_rows)
    assert "fcos_R_18_FPN 5.0 10 75 25 - - -".split() in md_rows  # assignment table
    assert "plain - - - - - - -".split() in md_rows


def test_compare_collect_only_names_missing_file(tmp_path, capsys):
    from dense_assign.tools import compare

    (tmp_path / "unfinished").mkdir()
    with pytest.raises(SystemExit) as exc:
        compare.main(["--collect-only", str(tmp_path / "unfinished"), "--output", str(tmp_path)])
    assert exc.value.code == 2
    assert str(tmp_path / "unfinished" / "final_results.json") in capsys.readouterr().err


# ------------------------------------------------------------------------ analyze_assignment
def _direct_fcos_counts():
    """Positives of FCOSAssigner (tiny_fcos.py's settings) computed without the tool: dataset
    dicts, test-time resize, priors on the padded input, the assigner called directly."""
    import detectron2.data.transforms as T
    from detectron2.data import DatasetCatalog, DatasetMapper

    from dense_assign.assigners import FCOSAssigner

    mapper = DatasetMapper(
        is_train=True, augmentations=[T.ResizeShortestEdge(128, 256)], image_format="BGR"
    )
    assigner = FCOSAssigner(num_classes=7, center_sampling_radius=1.5)
    totals = {"num_gt": 0, "num_pos": 0, "gt_without_pos": 0, "per_level": torch.zeros(5)}
    by_size = {"small": 0, "medium": 0, "large": 0}
    for d in DatasetCatalog.get(TINY_VAL):
        inputs = mapper(dict(d))
        h, w = inputs["image"].shape[-2:]
        padded = (-(-h // 32) * 32, -(-w // 32) * 32)
        priors = make_priors(image_size=padded, strides=(8, 16, 32, 64, 128))
        gt = inputs["instances"]
        result = assigner(priors, gt, image_size=(h, w))
        pos = (result.labels >= 0) & (result.labels < 7)
        totals["num_gt"] += len(gt)
        totals["num_pos"] += int(pos.sum())
        totals["gt_without_pos"] += len(gt) - len(torch.unique(result.matched_idxs[pos]))
        totals["per_level"] += torch.bincount(priors.levels[pos], minlength=5)
        area = gt.gt_boxes.area() * (d["width"] * d["height"]) / float(w * h)
        by_size["small"] += int((area < 32**2).sum())
        by_size["large"] += int((area >= 96**2).sum())
    by_size["medium"] = totals["num_gt"] - by_size["small"] - by_size["large"]
    return totals, by_size


def test_analyze_assignment_totals_match_the_assigner(synthetic_datasets, tmp_path, capsys):
    from dense_assign.tools import analyze_assignment

    out = tmp_path / "analysis.json"
    analyze_assignment.main(["--config-file", TINY_FCOS, "--output", str(out)])
    printed = capsys.readouterr().out
    stats = json.loads(out.read_text())
    assert stats["assigner"] == "FCOSAssigner" and stats["num_images"] == 4
    totals, by_size = _direct_fcos_counts()
    everything = stats["buckets"]["all"]
    assert totals["num_pos"] > 0
    assert everything["num_gt"] == totals["num_gt"]
    assert everything["num_pos"] == totals["num_pos"]
    assert everything["gt_without_pos"] == totals["gt_without_pos"]
    assert list(everything["pos_per_level"].values()) == totals["per_level"].long().tolist()
    assert everything["pos_per_gt_mean"] == pytest.approx(totals["num_pos"] / totals["num_gt"])
    # the size buckets partition the GTs and the positives
    buckets = [stats["buckets"][b] for b in ("small", "medium", "large")]
    assert [b["num_gt"] for b in buckets] == [by_size[b] for b in ("small", "medium", "large")]
    assert sum(b["num_pos"] for b in buckets) == totals["num_pos"]
    assert sum(b["gt_without_pos"] for b in buckets) == totals["gt_without_pos"]
    # the printed table has the totals
    row = next(cells for cells in markdown_rows(printed) if cells[0] == "all")
    assert row[1:3] == [str(totals["num_gt"]), str(totals["num_pos"])]


def test_analyze_assignment_names_a_bad_dataset(synthetic_datasets, tmp_path, capsys):
    from dense_assign.tools import analyze_assignment

    with pytest.raises(SystemExit):
        analyze_assignment.main(
            [
                "--config-file",
                TINY_FCOS,
                "--dataset",
                "no_such_dataset",
                "--output",
                str(tmp_path / "x.json"),
            ]
        )
    assert "--dataset 'no_such_dataset' is not a registered dataset" in capsys.readouterr().err
