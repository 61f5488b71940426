"""The paper's claims judged from bench/paper_table.py's records: the statistics and the verdicts.

A difference counts only beyond two standard errors (:func:`judged`); a claim holds only
when every comparison that tests it is in its favour (:func:`verdict_of`).
"""

from __future__ import annotations

import math
import statistics

SIZES = ("140k", "340k", "590k")
ENHANCED = "custom-590k-dw"  # the network of the paper's enhancement table
ENHANCEMENT_ROWS = {
    "blurpool": ("blurpool",),
    "swa": ("swa",),
    "squeeze_excite": ("squeeze_excite",),
    "mixup": ("mixup",),
    "blurpool+squeeze_excite+swa": ("blurpool", "squeeze_excite", "swa"),
}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def pct(values: list[float]) -> str:
    """Mean in percent, with the standard deviation across seeds and n when n > 1."""
    m, s = mean_sd(values)
    return f"{100 * m:.1f}" if len(values) == 1 else f"{100 * m:.1f} ± {100 * s:.1f} (n={len(values)})"


def worst_class(records: list[dict]) -> str:
    """Lowest per-class recall (mean over seeds) and its class."""
    classes = records[0]["per_class_recall"]
    means = {c: statistics.fmean(r["per_class_recall"][c] for r in records) for c in classes}
    c = min(means, key=means.get)
    return f"{100 * means[c]:.1f} ({c})"


def compare(a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean(a) - mean(b), standard error of that difference); a lone run counts with the
    other side's spread only."""
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    return ma - mb, math.sqrt(sa**2 / len(a) + sb**2 / len(b))


def judged(diff: float, se: float) -> str:
    """'higher' / 'lower' when the difference is beyond two standard errors, else 'within noise'."""
    if se == 0:
        return "higher" if diff > 0 else "lower" if diff < 0 else "equal"
    return "higher" if diff > 2 * se else "lower" if diff < -2 * se else "within noise"


def verdict_of(favour: int, against: int, total: int) -> str:
    """A claim tested by ``total`` comparisons, ``favour`` of them beyond noise in its favour and
    ``against`` beyond noise against it: holds only when every comparison is in its favour."""
    if favour == total:
        return "holds"
    if favour:
        return "mixed"
    return "does not hold" if against else "not shown (within noise)"


def verdicts(acc, lat, datasets: list[str]) -> list[str]:
    from castmodels import PRESETS
    from search.training.recipe import AUGMENTATIONS

    lines = []
    # 1. depthwise beats 3x3 at equal size
    parts, wins, losses, total = [], 0, 0, 0
    for d in datasets:
        for s in SIZES:
            dw, c3 = acc(d, "preset", f"custom-{s}-dw"), acc(d, "preset", f"custom-{s}-3x3")
            if not dw or not c3:
                continue
            diff, se = compare(dw, c3)
            v = judged(diff, se)
            total += 1
            wins += v == "higher"
            losses += v == "lower"
            parts.append(f"{d} {s}: {100 * diff:+.1f} ± {100 * se:.1f} points ({v})")
    verdict = verdict_of(wins, losses, total)
    if total:
        lines.append(f"1. **Depthwise-separable beats 3x3 at equal size: {verdict}** "
                     f"(depthwise better in {wins} of {total} comparisons, worse in {losses}). "
                     f"Depthwise minus 3x3 accuracy: {'; '.join(parts)}.\n")
    # 2. BlurPool is the best enhancement
    parts, beaten_by_blurpool, best_everywhere = [], 0, True
    total = 0
    for d in datasets:
        bp = acc(d, "enhancement", "blurpool")
        if not bp:
            continue
        others = {"none": acc(d, "preset", ENHANCED)}
        others.update({e: acc(d, "enhancement", e) for e in ENHANCEMENT_ROWS if e != "blurpool"})
        means = {e: statistics.fmean(v) for e, v in others.items() if v}
        means["blurpool"] = statistics.fmean(bp)
        ranked = sorted(means, key=means.get, reverse=True)
        best_everywhere &= ranked[0] == "blurpool"
        for v in others.values():
            if v:
                total += 1
                beaten_by_blurpool += judged(*compare(bp, v)) == "higher"
        parts.append(f"{d}: ranking by mean accuracy " + ", ".join(f"{e} {100 * means[e]:.1f}" for e in ranked))
    verdict = ("holds" if best_everywhere and beaten_by_blurpool == total
               else "not shown (BlurPool has the highest mean, but not beyond noise against every row)"
               if best_everywhere else "does not hold")
    if total:
            lines.append(f"2. **BlurPool is the best enhancement: {verdict}** (BlurPool beyond noise better in "
                         f"{beaten_by_blurpool} of {total} comparisons). {'; '.join(parts)}.\n")
    # 3. augmentations lower accuracy
    lower = higher = total = 0
    parts = []
    for d in datasets:
        none = acc(d, "preset", ENHANCED)
        for a in AUGMENTATIONS:
            v = acc(d, "augmentation", a)
            if not v or not none:
                continue
            diff, se = compare(v, none)
            j = judged(diff, se)
            total += 1
            lower += j == "lower"
            higher += j == "higher"
            parts.append(f"{d} {a} {100 * diff:+.1f}")
    verdict = verdict_of(lower, higher, total)
    if total:
            lines.append(f"3. **Augmentations lower accuracy: {verdict}** ({lower} of {total} single augmentations "
                         f"lower than no augmentation beyond noise, {higher} higher, the rest within noise). "
                         f"Change in accuracy points against none: {'; '.join(parts)}.\n")
    # 4. custom nets faster than the ResNets and MobileNetV2
    refs = ("resnet20", "resnet47", "resnet65", "mobilenet_v2")
    parts, holds, checked = [], True, 0
    for d in datasets:
        custom = {p: lat[(d, "preset", p)] for p in PRESETS if (d, "preset", p) in lat}
        base = {b: lat[(d, "baseline", b)] for b in refs if (d, "baseline", b) in lat}
        if not custom or not base:
            continue
        for i, what in ((0, "1 image"), (1, "batch of 50")):
            slowest = max(custom, key=lambda p: custom[p][i])
            fastest = min(base, key=lambda b: base[b][i])
            checked += 1
            ok = custom[slowest][i] < base[fastest][i]
            holds &= ok
            parts.append(f"{d}, {what}: slowest custom {slowest} {custom[slowest][i]:.2f} ms vs fastest of "
                         f"these baselines {fastest} {base[fastest][i]:.2f} ms")
    if checked:
        lines.append(f"4. **Every custom net is faster than ResNet-20/47/65 and MobileNetV2: "
                     f"{'holds' if holds else 'does not hold'}**. {'; '.join(parts)}.\n")
    # 5. custom-590k-dw more accurate than the ResNets and the ViT (the abstract's claim)
    parts, wins, losses, total = [], 0, 0, 0
    for d in datasets:
        mine = acc(d, "preset", ENHANCED)
        for b in ("resnet20", "resnet47", "resnet65", "vit"):
            v = acc(d, "baseline", b)
            if mine and v:
                diff, se = compare(mine, v)
                total += 1
                v = judged(diff, se)
                wins += v == "higher"
                losses += v == "lower"
                parts.append(f"{d} {b} {100 * diff:+.1f}")
    if total:
        verdict = verdict_of(wins, losses, total)
        lines.append(f"5. **custom-590k-dw is more accurate than the ResNets and the ViT: {verdict}** "
                     f"(beyond noise in {wins} of {total}; baselines have one seed, so only the custom "
                     f"net's spread counts). Accuracy points custom-590k-dw minus baseline: "
                     f"{'; '.join(parts)}.\n")
    return lines
