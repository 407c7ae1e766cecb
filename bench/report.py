"""The benchmark's outputs: a table on the terminal, results.json and a plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    lines = [f"Machine: {results['machine']}", ""]
    lines.append(f"Raw model ceiling ({results['device']}, preprocessed uint8 crops, no HTTP)")
    lines.append(f"  {'model':<9}{'precision':<10}{'batch':>6}{'images/s':>11}{'ms/batch':>10}{'CPU ms/img':>12}")
    for raw in results["raw"]:
        images_per_s, ms, cpu = fmt(raw["images_per_s"]), fmt(raw["ms_per_batch"]), fmt(raw["cpu_ms_per_image"])
        lines.append(
            f"  {raw['model']:<9}{raw['precision']:<10}{raw['batch_size']:>6}{images_per_s:>11}{ms:>10}{cpu:>12}"
        )
    lines.append(
        "  (service: the served torch forward pass, conv+BN folded; eager: plain torchvision, channels_last;\n"
        "   openvino: the served OpenVINO model, the batch split over its streams)"
    )
    lines.append("")
    load = results["load"]
    lines.append(
        f"HTTP under load: POST /predict, {load['images']} JPEGs ({load['image_sizes']}), "
        f"{load['requests']} requests per level after {load['warmup']} warm-up"
    )
    header = ["conc", "images/s", "p50 ms", "p99 ms", "errors", "srv cores", "batch", "CPU ms/img", "outside"]
    lines.append(f"  {'server':<22}" + "".join(f"{h:>11}" for h in header))
    for server in results["servers"]:
        for level in server["levels"]:
            cells = [
                str(level["concurrency"]),
                fmt(level["images_per_s"]),
                fmt(level["p50_ms"], 0),
                fmt(level["p99_ms"], 0),
                str(level["errors"]),
                fmt(level["server_cpu_cores"], 2),
                fmt(level["mean_batch_size"], 1),
                fmt(level["server_cpu_ms_per_image"], 1),
                fmt(level["cpu_ms_per_image_outside_model"], 1),
            ]
            lines.append(f"  {server['name']:<22}" + "".join(f"{c:>11}" for c in cells))
    lines.append(
        "  (srv cores: cores busy, all server processes together; batch: mean requests per forward pass;\n"
        "   CPU ms/img: server CPU per image served; outside: that minus the forward pass's CPU per image\n"
        "   at that batch size, from the raw section)"
    )
    lines.append("")
    lines.append(f"Goals at concurrency {results['goals'][0]['concurrency'] if results['goals'] else '-'}:")
    for goal in results["goals"]:
        verdict = "met" if goal["met"] else "MISSED"
        lines.append(f"  {goal['label']}: {fmt(goal['value'], 2)}  (target {goal['op']} {goal['target']}: {verdict})")
    capacity = results["capacity"]
    lines.append(
        f"Capacity ({capacity['device']}, {capacity['runtime']} {capacity['precision']}): "
        f"{fmt(capacity['cpu_ms_per_image'])} CPU ms per "
        f"image, {fmt(capacity['cpu_ms_per_image_outside_model'])} outside the model; model ceiling "
        f"{fmt(capacity['model_ceiling_images_per_s'])} images/s on {capacity['cpus']} CPUs"
    )
    for agreement in results["agreement"]:
        lines.append(
            f"  top-1 agreement {agreement['precision']} vs fp32 on {agreement['images']} other photos: "
            f"{100 * agreement['rate']:.1f}% ({agreement['same_top1']}/{agreement['images']}), mean |dp| "
            f"{agreement['mean_score_difference']:.4f}"
        )
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2))


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server in results["servers"]:
        levels = server["levels"]
        x = [level["concurrency"] for level in levels]
        throughput.plot(x, [level["images_per_s"] for level in levels], marker="o", label=server["name"])
        latency.plot(x, [level["p99_ms"] for level in levels], marker="o", label=server["name"])
    for raw_best in results["raw_best"]:
        throughput.axhline(raw_best["images_per_s"], linestyle="--", linewidth=1, color="grey")
        label = f"raw {raw_best['model']} {raw_best['precision']}"
        throughput.annotate(label, (1, raw_best["images_per_s"]), fontsize=8, color="grey")
    eager = results["raw_eager_best"]
    throughput.axhline(eager["images_per_s"], linestyle=":", linewidth=1, color="black")
    throughput.annotate("eager fp32 in-process", (1, eager["images_per_s"]), fontsize=8)
    for axis, title, unit in ((throughput, "Throughput", "images/s"), (latency, "p99 latency", "ms")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(alpha=0.3)
    latency.set_yscale("log")
    throughput.legend(fontsize=8)
    figure.suptitle(f"elastic-resnet benchmark - {results['machine']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
