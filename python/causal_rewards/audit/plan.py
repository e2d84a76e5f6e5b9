"""Between the two passes: the bins fitted from pass one's value counts, the condition's groups, and
the method (``Plan``). Both engines make the plan on the driver and send it to pass two."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..binning import Binner, CrossedBins
from .limits import MAX_ARRAY_BYTES, PAIR_TEST_WORK, check_array, check_total_bins
from .spec import Spec

#: method="auto" uses the brute force up to this many rows (with a condition: up to as many pairs of
#: rows within a condition value, so that many small groups, e.g. one per prompt, stay exact).
EXACT_MAX_ROWS = 1000
EXACT_MAX_PAIRS = EXACT_MAX_ROWS**2
#: Points of the coarse grid on which the grid method's permutation test runs.
COARSE_POINTS = 2049
#: Points of the grid from which the grid method takes the median heuristic.
MEDIAN_POINTS = (1 << 20) + 1
#: The kernels each method computes.
METHOD_KERNELS = {
    "exact": ("rbf", "laplacian", "imq", "energy"),
    "scan": ("energy", "laplacian"),
    "grid": ("rbf", "imq"),
}


@dataclass
class Plan:
    """Fitted bins, the method and the grid, decided after pass one."""

    bins: CrossedBins
    groups: Binner | None
    group_labels: list[str]
    method: str
    low: float
    high: float
    fine_points: int
    coarse_points: int = COARSE_POINTS
    median_points: int = MEDIAN_POINTS
    files: dict = field(default_factory=dict)  # path -> FileState seen by pass one
    pair_tests: str = "off"  # what the core computes: "off", "raw" or "maxT" (see choose_pair_tests)
    notes: list = field(default_factory=list)  # lines for the report on what was (not) computed

    @property
    def num_groups(self) -> int:
        return len(self.group_labels)

    @property
    def num_cells(self) -> int:
        """(group, bin) cells: the grid sketch has one histogram per cell."""
        return self.num_groups * self.bins.num_bins


def choose_method(spec: Spec, pairs: int) -> str:
    """The method asked for, or for "auto" the exact brute force when the pairs of rows it sweeps (within
    each condition value) are few, else the fast method of the kernel; ValueError when the method does
    not compute the kernel."""
    method = spec.method
    if method == "auto":
        if pairs <= EXACT_MAX_PAIRS:
            method = "exact"
        else:
            method = "scan" if spec.kernel in METHOD_KERNELS["scan"] else "grid"
    supported = METHOD_KERNELS[method]
    if spec.kernel not in supported:
        raise ValueError(
            f"method {method!r} supports the kernels {', '.join(supported)}, not {spec.kernel!r}"
        )
    return method


def pair_test_work(spec: Spec, plan: Plan, rows: int) -> int:
    """Operations the per-pair statistics add over all permutations (see ``limits.PAIR_TEST_WORK``)."""
    m = plan.bins.num_bins
    per_permutation = m * m * plan.coarse_points if plan.method == "grid" else rows * m
    return spec.permutations * per_permutation


def choose_pair_tests(spec: Spec, plan: Plan, rows: int) -> tuple[str, list[str]]:
    """(pair tests for the core, notes for the report). By default (``spec.pair_tests`` None) the
    per-pair p-values are computed when their work fits ``PAIR_TEST_WORK`` and, for maxT, their
    permuted statistics fit ``MAX_ARRAY_BYTES``; otherwise only the global test runs, and a note says
    why and how to ask for them."""
    if spec.permutations == 0 or spec.pair_tests is False:
        return "off", []
    m = plan.bins.num_bins
    stored = 8 * spec.permutations * m * (m - 1) // 2 if spec.adjust == "maxT" else 0
    if spec.pair_tests is None:
        work = pair_test_work(spec, plan, rows)
        reasons = []
        if work > PAIR_TEST_WORK:
            grid = plan.method == "grid"
            shape = f"{m}^2 bins x {plan.coarse_points} grid points" if grid else f"{rows:,} rows x {m} bins"
            reasons.append(
                f"{spec.permutations:,} permutations x {shape} = {work:.3g} operations, above the default "
                f"budget of {PAIR_TEST_WORK:.0e}"
            )
        if stored > MAX_ARRAY_BYTES:
            reasons.append(f"maxT would keep {stored / 2**30:.3g} GiB of permuted pair statistics")
        if reasons:
            note = (
                f"per-pair p-values not computed ({'; '.join(reasons)}): the global test does not need them; "
                "ask for them with pair_tests=True (crm audit --pair-tests)"
            )
            return "off", [note]
    if stored:
        check_array(
            f"maxT over {m * (m - 1) // 2:,} bin pairs and {spec.permutations:,} permutations",
            (spec.permutations, m * (m - 1) // 2),
            "use adjust='holm' (--adjust holm), fewer bins or fewer permutations",
        )
    return ("maxT" if spec.adjust == "maxT" else "raw"), []


def default_fine_points(cells: int) -> int:
    """The fine grid: finer for few cells, where its memory is small."""
    return 131073 if cells <= 64 else 65537 if cells <= 256 else 16385


def make_plan(first, spec: Spec, origins: list[str]) -> Plan:
    """The plan from pass one's merged result (``passes.FirstPass``)."""
    if first.rows == 0:
        where = ", ".join(origins[:3]) + (" ..." if len(origins) > 3 else "")
        extra = f" ({first.dropped} dropped for NaN)" if first.dropped else ""
        raise ValueError(f"{where}: no rows to audit{extra}")
    binners = [Binner(spec.binning[c], spec.num_bins).fit_summary(first.columns[c]) for c in spec.by]
    check_total_bins([b.num_bins_ for b in binners], list(spec.by))
    bins = CrossedBins(binners, list(spec.by))
    groups = None
    if spec.condition:
        groups = Binner("categorical").fit_summary(first.columns[spec.condition], single_bin=True)
    group_labels = [f"{spec.condition}={v}" for v in groups.categories_] if groups else ["all"]
    sizes = [first.rows] if groups is None else first.columns[spec.condition].counts.tolist()
    method = choose_method(spec, sum(size * size for size in sizes))
    fine = spec.grid_points or default_fine_points(bins.num_bins * len(group_labels))
    plan = Plan(bins, groups, group_labels, method, first.low, first.high, fine, files=dict(first.files))
    check_sizes(plan, spec)
    plan.pair_tests, plan.notes = choose_pair_tests(spec, plan, first.rows)
    return plan


def check_sizes(plan: Plan, spec: Spec) -> None:
    """The arrays the plan implies fit the audit's limits: the per-group M x M matrices of the result
    and, for the grid method, the sketch."""
    m = plan.bins.num_bins
    if spec.condition:
        check_array(
            f"condition {spec.condition!r} with {plan.num_groups:,} values and {m} bins: the MMD^2 matrices per value",
            (plan.num_groups, m, m),
            "use fewer bins or a condition with fewer values",
        )
    if plan.method == "grid":
        check_array(
            f"the grid sketch of {plan.num_cells:,} cells (bins x condition values)",
            (plan.num_cells, plan.fine_points + plan.coarse_points),
            "use fewer grid_points, fewer bins or a condition with fewer values",
        )
