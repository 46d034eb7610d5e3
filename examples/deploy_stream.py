"""Replay a recorded test subject through the streaming recognizer, as a deployment would see it.

    python examples/deploy_stream.py [--model uci-har-student] [--subject 9] [--hop 64]

A test subject's raw recording from ``uci-har`` (the HAPT recordings, fetched and verified on
first use) is fed sample by sample in chunks of 10, as a sensor driver would deliver them; every
``hop`` samples the recognizer classifies the last 128 samples and smooths over the last 3
decisions. Prints the decisions against the true activity, the accuracy, and the latency per
decision. The default model is the pretrained student shipped with tinysml (no training); any
student checkpoint of a uci-har run works too (``--model runs/s/student.npz``).
"""
from __future__ import annotations

import argparse

import numpy as np

from tinysml.deploy import Predictor, StreamingRecognizer


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="uci-har-student", help="a shipped model's name or a checkpoint path")
    p.add_argument("--subject", type=int, default=9)
    p.add_argument("--hop", type=int, default=64)
    p.add_argument("--show", type=int, default=15, help="decisions to print")
    args = p.parse_args(argv)
    predictor = Predictor.load(args.model)
    from tinysml.data.hapt import ACTIVITIES, load_recordings
    recordings = [r for r in load_recordings() if r.subject == args.subject]
    if not recordings:
        raise SystemExit(f"no recording of subject {args.subject}")
    rec = recordings[0]
    stream = StreamingRecognizer(predictor, hop=args.hop, k=3, smoothing="mean")
    decisions, truth = [], []
    for start in range(0, len(rec.labels), 10):
        for d in stream.push(rec.signal[start:start + 10]):
            label = rec.labels[d.sample - 1]
            if 1 <= label <= 6:                                   # score only the 6 UCI-HAR activities
                decisions.append(d)
                truth.append(ACTIVITIES[label - 1])
    for d, t in list(zip(decisions, truth))[:: max(1, len(decisions) // args.show)][:args.show]:
        print(f"t={d.sample / 50:7.2f} s  {d.name:<20} p={d.probability:.2f}  true {t:<20} {d.latency_ms:.3f} ms")
    correct = np.mean([d.name == t for d, t in zip(decisions, truth)])
    lat = np.array([d.latency_ms for d in decisions])
    print(f"\nsubject {args.subject}: {len(decisions)} decisions on labelled samples, accuracy {correct:.3f}; "
          f"latency per decision median {np.median(lat):.3f} ms, p95 {np.percentile(lat, 95):.3f} ms")


if __name__ == "__main__":
    main()
