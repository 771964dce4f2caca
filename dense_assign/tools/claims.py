"""The papers' claims as comparisons between the converging benchmark's configs, with a verdict.

Used by :mod:`dense_assign.tools.compare`, which writes ``claims.md`` when both configs of a claim
were run. Each claim compares config ``a`` with config ``b`` on one metric, with the seeds' means:

* ``greater``: the paper says ``a`` beats ``b``. The difference d = mean(a) - mean(b) has the
  standard error se = sqrt(std(a)^2 / n(a) + std(b)^2 / n(b)); the verdict is *reproduced* when
  d > 2 se, *reversed* when d < -2 se, *within noise* otherwise.
* ``not_worse``: ``a`` matches or beats ``b``: *reproduced* when d >= 0, *reversed* when
  d < -2 se, *within noise* between (a matching that the seeds cannot tell from a small loss).
* ``close``: ``a`` and ``b`` are within ``tolerance`` AP of each other: *reproduced* when
  |d| <= tolerance, *not reproduced* otherwise.
* ``gain_larger``: ``a`` gains more over ``b`` on ``metric`` than on ``other_metric``; the
  difference of the two gains has its standard error from the four (config, metric) spreads taken
  as independent (an overestimate: AP and AP75 of one run are correlated).

With one seed a side (no std), se is unknown and the verdict is *no error estimate*.
"""

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

from . import pipe_table

__all__ = ["Claim", "CLAIMS", "evaluate_claims", "claims_table"]


@dataclass(frozen=True)
class Claim:
    paper: str
    text: str
    a: str  # config names (file names without .py)
    b: str
    metric: str = "AP"
    kind: str = "greater"
    other_metric: Optional[str] = None
    tolerance: float = 1.0


#: The claims the converging benchmark checks (configs of configs/Synthetic-Converge and its
#: ablations/ folder). A claim whose configs were not both run is left out of the table.
CLAIMS = (
    Claim(
        "ATSS",
        "ATSS assignment beats FCOS's (FCOS + ATSS vs FCOS)",
        "atss_fcos_R_18_FPN",
        "fcos_R_18_FPN",
    ),
    Claim(
        "ATSS",
        "ATSS beats RetinaNet's max-IoU assignment (#A=1 + ATSS vs RetinaNet)",
        "atss_R_18_FPN",
        "retinanet_R_18_FPN",
    ),
    Claim(
        "ATSS",
        "with ATSS, RetinaNet (#A=1) comes close to FCOS: the gap is assignment",
        "atss_R_18_FPN",
        "atss_fcos_R_18_FPN",
        kind="close",
    ),
    Claim(
        "ATSS",
        "with ATSS, 9 anchors a location (#A=9) change little",
        "atss_A9_R_18_FPN",
        "atss_R_18_FPN",
        kind="close",
    ),
    Claim(
        "Pseudo-IoU",
        "Pseudo-IoU (T = 0.4) beats the AF-baseline",
        "pseudo_iou_R_18_FPN",
        "af_baseline_R_18_FPN",
    ),
    Claim(
        "Pseudo-IoU",
        "the Pseudo-IoU filter alone beats the AF-baseline (Table 3: 33.9 -> 36.8)",
        "pseudo_iou_iou_loss_R_18_FPN",
        "af_baseline_R_18_FPN",
    ),
    Claim(
        "Pseudo-IoU",
        "GIoU loss adds to it (Table 3: 36.8 -> 37.1)",
        "pseudo_iou_giou_R_18_FPN",
        "pseudo_iou_iou_loss_R_18_FPN",
    ),
    Claim(
        "Pseudo-IoU",
        "centerness adds to that (Table 3: 37.1 -> 37.4)",
        "pseudo_iou_R_18_FPN",
        "pseudo_iou_giou_R_18_FPN",
    ),
    Claim(
        "IoU-aware",
        "IoU-aware RetinaNet beats RetinaNet on AP",
        "iou_aware_retinanet_R_18_FPN",
        "retinanet_R_18_FPN",
    ),
    Claim(
        "IoU-aware",
        "... and by more on AP75 than on AP",
        "iou_aware_retinanet_R_18_FPN",
        "retinanet_R_18_FPN",
        metric="AP75",
        kind="gain_larger",
        other_metric="AP",
    ),
    Claim(
        "IoU-aware",
        "gradient through the IoU target beats a detached target",
        "iou_aware_retinanet_R_18_FPN",
        "iou_aware_retinanet_detach_R_18_FPN",
    ),
    Claim(
        "AutoAssign",
        "AutoAssign matches or beats FCOS",
        "autoassign_R_18_FPN",
        "fcos_R_18_FPN",
        kind="not_worse",
    ),
    Claim(
        "AutoAssign",
        "AutoAssign matches or beats ATSS (FCOS + ATSS)",
        "autoassign_R_18_FPN",
        "atss_fcos_R_18_FPN",
        kind="not_worse",
    ),
    Claim(
        "AutoAssign",
        "the learned center prior beats no prior (Table 2)",
        "autoassign_R_18_FPN",
        "autoassign_no_prior_R_18_FPN",
    ),
    Claim(
        "AutoAssign",
        "the learned center prior beats a fixed one (Table 2)",
        "autoassign_R_18_FPN",
        "autoassign_fixed_prior_R_18_FPN",
    ),
    Claim(
        "AutoAssign", "ImpObj helps (Table 4)", "autoassign_R_18_FPN", "autoassign_no_obj_R_18_FPN"
    ),
    Claim(
        "AutoAssign",
        "confidence weighting helps (Table 3)",
        "autoassign_R_18_FPN",
        "autoassign_no_conf_R_18_FPN",
    ),
    Claim(
        "SAPD", "soft-weighted points beat FSAF (Table 2)", "sapd_sw_R_18_FPN", "sapd_fsaf_R_18_FPN"
    ),
    Claim(
        "SAPD",
        "soft-selected levels beat soft weights alone (Table 2)",
        "sapd_R_18_FPN",
        "sapd_sw_R_18_FPN",
    ),
)

#: The next assigners' claims (issue #17), checked once their converging configs are run.
CLAIMS = CLAIMS + (
    Claim(
        "TOOD",
        "task-aligned assignment beats ATSS (Table 5)",
        "tood_R_18_FPN",
        "atss_fcos_R_18_FPN",
    ),
    Claim("YOLOX", "SimOTA beats FCOS's assignment", "simota_R_18_FPN", "fcos_R_18_FPN"),
    Claim("RTMDet", "dynamic soft labels beat FCOS's assignment", "dsl_R_18_FPN", "fcos_R_18_FPN"),
)

#: PAA's and OTA's claims (issue #18): PAA on ATSS's anchor model (#A=1), OTA on the point model
#: against FCOS's assignment and ATSS's on the same points.
CLAIMS = CLAIMS + (
    Claim("PAA", "probabilistic anchor assignment beats ATSS", "paa_R_18_FPN", "atss_R_18_FPN"),
    Claim("OTA", "optimal transport assignment beats ATSS", "ota_R_18_FPN", "atss_fcos_R_18_FPN"),
    Claim("OTA", "optimal transport assignment beats FCOS's", "ota_R_18_FPN", "fcos_R_18_FPN"),
)


def _diff(ga: Dict, gb: Dict, metric: str):
    d = ga[metric] - gb[metric]
    parts = [ga.get(f"{metric}_std"), gb.get(f"{metric}_std")]
    if any(p is None for p in parts):
        return d, None, [None, None]
    terms = [parts[0] ** 2 / ga["n"], parts[1] ** 2 / gb["n"]]
    return d, math.sqrt(sum(terms)), terms


def evaluate_claim(claim: Claim, ga: Dict, gb: Dict) -> Dict:
    """The measured difference, its standard error and the verdict of one claim (see module doc)."""
    if claim.kind == "gain_larger":
        d1, se1, t1 = _diff(ga, gb, claim.metric)
        d2, se2, t2 = _diff(ga, gb, claim.other_metric)
        d = d1 - d2
        se = None if se1 is None or se2 is None else math.sqrt(sum(t1) + sum(t2))
    else:
        d, se, _ = _diff(ga, gb, claim.metric)
    if claim.kind == "close":
        verdict = "reproduced" if abs(d) <= claim.tolerance else "not reproduced"
    elif se is None:
        verdict = "no error estimate"
    elif claim.kind in ("greater", "gain_larger"):
        verdict = "reproduced" if d > 2 * se else ("reversed" if d < -2 * se else "within noise")
    elif claim.kind == "not_worse":
        verdict = "reproduced" if d >= 0 else ("reversed" if d < -2 * se else "within noise")
    else:
        raise ValueError(f"unknown claim kind {claim.kind!r}")
    return {**asdict(claim), "difference": d, "stderr": se, "verdict": verdict}


def evaluate_claims(groups: Sequence[Dict], claims: Sequence[Claim] = CLAIMS) -> List[Dict]:
    """Every claim whose two configs are among ``groups`` (compare's per-config summaries, each
    with at least one successful run)."""
    by_name = {g["name"]: g for g in groups if g.get("n")}
    return [
        evaluate_claim(c, by_name[c.a], by_name[c.b])
        for c in claims
        if c.a in by_name and c.b in by_name
    ]


def claims_table(results: Sequence[Dict]) -> str:
    head = ["paper", "claim", "a - b", "metric", "difference ± s.e.", "verdict"]
    lines = []
    for r in results:
        metric = (
            r["metric"]
            if r["kind"] != "gain_larger"
            else f"{r['metric']} gain - {r['other_metric']} gain"
        )
        se = "" if r["stderr"] is None else f" ± {r['stderr']:.2f}"
        tol = f" (tolerance {r['tolerance']:.1f})" if r["kind"] == "close" else ""
        cells = [
            r["paper"],
            r["text"],
            f"{r['a']} - {r['b']}",
            metric,
            f"{r['difference']:+.2f}{se}",
            r["verdict"] + tol,
        ]
        lines.append(cells)
    return pipe_table(head, lines)
