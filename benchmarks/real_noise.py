"""The real-noise test (issue #25, docs/real_noise.md) of the classifiers a finished pipeline trained, read from its
stage records (classifier-*.json, segmenter.json), writing nothing beside them: the set, its spectrogram and mask
cache and the evaluation runs go under --out (point MLFLOW_TRACKING_URI at a store there too). `make demo` runs the
same measures as its stage real-noise-test; this script measures a demo folder without touching it.

    MLFLOW_TRACKING_URI=sqlite:////tmp/realnoise/mlflow.db \\
        python benchmarks/real_noise.py --state data/demo/pipeline --out /tmp/realnoise [--clips ../shared/data/real]
        [--porpoise-snr 16 29]   # fainter porpoise trains (the lower half of the benchmark's range), still visible
        [--calibrated data/demo/manifest.csv]   # also the deployed operating points (stage real-noise-calibrated)

With --calibrated, each classifier is also exported with the segmenter into a bundle under --out/bundles, calibrated
on that benchmark manifest's validation windows (the split the state's split.json records) for precision 0.9, and
measured on the set at its own thresholds, as the stage real-noise-calibrated does (real_noise_calibrated.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from mgc_lightning.audio.manifest import SplitConfig
from mgc_lightning.core.atomic import write_bytes_atomic
from mgc_lightning.evaluate.real_noise import (
    CAVEAT, DEPLOYED_HEADER, DEPLOYED_VERSION, MEASURES_VERSION, calibrated_on_real_noise, chance_row,
    evaluate_on_real_noise, table, table_row,
)
from mgc_lightning.synth.real_noise import RealNoiseConfig, build_real_noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", required=True, help="a pipeline's stage records, e.g. data/demo/pipeline")
    parser.add_argument("--clips", default="../shared/data/real")
    parser.add_argument("--out", default="/tmp/realnoise")
    parser.add_argument("--preset", default="origin", help="the front end the classifiers trained on")
    parser.add_argument("--seed", type=int, default=0, help="the set's seed")
    parser.add_argument("--porpoise-snr", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="the porpoise trains' SNR range in dB (default: RealNoiseConfig's, 29-42)")
    parser.add_argument("--calibrated", metavar="BENCHMARK_MANIFEST",
                        help="also the deployed operating points, calibrated on this manifest's validation windows")
    args = parser.parse_args()
    out, state = Path(args.out), Path(args.state)
    started = time.perf_counter()
    config = RealNoiseConfig(seed=args.seed)
    if args.porpoise_snr:
        config = replace(config, porpoise_snr_db=tuple(args.porpoise_snr))
    manifest = build_real_noise(args.clips, out / "set", config)
    print(f"real-noise set: {manifest} ({time.perf_counter() - started:.1f} s incl. any build)")
    segmenter = json.loads((state / "segmenter.json").read_text())["best"]
    saved = out / "real_noise.json"
    built = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]  # the set's content, as the pipeline stage keys it
    # a model measured before on this very set (same checkpoint, same manifest bytes) is kept; any other row is stale
    results = json.loads(saved.read_text()) if saved.is_file() else {}
    results = {name: result for name, result in results.items()
               if (result.get("set"), result.get("measures_version")) == (built, MEASURES_VERSION)}
    names = []
    for record in sorted(state.glob("classifier-*.json")):
        started = time.perf_counter()
        checkpoint, name = json.loads(record.read_text())["best"], record.stem.removeprefix("classifier-")
        names.append(name)
        if results.get(name, {}).get("checkpoint") == checkpoint:
            continue
        measures = evaluate_on_real_noise(checkpoint, manifest, args.preset, segmenter, out / "cache", out)
        results[name] = {"checkpoint": checkpoint, "set": built, "measures_version": MEASURES_VERSION,
                         "manifest": str(manifest.resolve()),
                         "row": table_row(name, measures), "goals": measures.goals, "measures": asdict(measures),
                         "seconds": round(time.perf_counter() - started, 1)}
        write_bytes_atomic(saved, json.dumps(results, indent=2).encode())
        print(f"{name}: {time.perf_counter() - started:.0f} s")
    print(table([*(results[name]["row"] for name in names), chance_row(manifest)]))
    print(f"\n{CAVEAT}")
    if args.calibrated:
        deployed(state, segmenter, Path(args.calibrated), manifest, built, out)


def deployed(state: Path, segmenter: str, benchmark: Path, manifest: Path, built: str, out: Path) -> None:
    """The stage real-noise-calibrated's measures of every classifier of the state, kept in
    real_noise_calibrated.json while checkpoint, segmenter, set and version are the same (the stage's key)."""
    saved = out / "real_noise_calibrated.json"
    results = json.loads(saved.read_text()) if saved.is_file() else {}
    settings = json.loads((state / "split.json").read_text())["settings"]  # the split every stage got
    split = SplitConfig(settings["group_by"], tuple(settings["fractions"]), settings["seed"])
    for record in sorted(state.glob("classifier-*.json")):
        checkpoint, name = json.loads(record.read_text())["best"], record.stem.removeprefix("classifier-")
        keyed = {"checkpoint": checkpoint, "segmenter": segmenter, "set": built, "measures_version": DEPLOYED_VERSION}
        if {k: results.get(name, {}).get(k) for k in keyed} != keyed:
            started = time.perf_counter()
            results[name] = {**keyed, **calibrated_on_real_noise(name, checkpoint, segmenter, benchmark, split,
                                                                 manifest, out / "bundles" / f"{name}.mgc"),
                             "seconds": round(time.perf_counter() - started, 1)}
            write_bytes_atomic(saved, json.dumps(results, indent=2).encode())
            print(f"{name} calibrated and measured: {results[name]['seconds']:.0f} s")
    names = [record.stem.removeprefix("classifier-") for record in sorted(state.glob("classifier-*.json"))]
    print("\nDeployed operating points (calibrated on validation windows, P 0.9)\n")
    print(table([row for name in names for row in results[name]["rows"]], DEPLOYED_HEADER))
    print("\n" + "\n".join(f"- {results[name]['note']}" for name in names))


if __name__ == "__main__":
    main()
