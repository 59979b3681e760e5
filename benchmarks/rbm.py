"""deconvlab.tied.BernoulliRBM against sklearn.neural_network.BernoulliRBM, side by side in one run.

Same data (scikit-learn's 8x8 digits scaled to [0, 1], a fixed 80/20 split), same n_components,
learning_rate, n_iter, batch_size and random_state. For each seed the fits are timed in turn
(interleaved, after one warm-up each) and scored on the held-out digits:

* ``score_samples`` (scikit-learn's stochastic pseudo-log-likelihood; both models flip the same
  bit of each sample, drawn from the same random_state);
* the exact pseudo-log-likelihood (every bit; deterministic given the weights).

Contenders: scikit-learn; deconvlab with scikit-learn's algorithm (persistent CD-1, same batches,
same initial weights); deconvlab with ``centered=True`` (the same model and hyper-parameters, the
centered gradient of Montavon & Mueller 2012 / Melchior et al. 2016).

Goals (issue 7): held-out pseudo-likelihood at least scikit-learn's, training time at most
scikit-learn's, aiming at 3x faster. Timings on a shared machine are noisy: read the ratios.

    .venv/bin/python benchmarks/rbm.py [--seeds 5] [--n-components 100] [--learning-rate 0.06]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neural_network import BernoulliRBM as SklearnRBM

from deconvlab.tied import BernoulliRBM


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Digits / 16 in [0, 1], shuffled once, 80% train / 20% held out."""
    X = load_digits().data / 16.0
    order = np.random.RandomState(seed).permutation(len(X))
    cut = int(0.8 * len(X))
    return X[order[:cut]], X[order[cut:]]


def timed_fit(model, X):
    begin = time.perf_counter()
    model.fit(X)
    return time.perf_counter() - begin, model


def held_out_scores(model, X_test) -> tuple[float, float]:
    """(mean score_samples, mean exact pseudo-likelihood), both computed the same way for both."""
    ours = model if isinstance(model, BernoulliRBM) else BernoulliRBM.from_sklearn(model)
    return float(model.score_samples(X_test).mean()), float(ours.pseudo_likelihood(X_test).mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-components", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.06)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()

    X_train, X_test = digits_split()
    shared = {
        "n_components": args.n_components,
        "learning_rate": args.learning_rate,
        "n_iter": args.n_iter,
        "batch_size": args.batch_size,
    }
    contenders = {
        "scikit-learn": lambda seed: SklearnRBM(**shared, random_state=seed),
        "deconvlab": lambda seed: BernoulliRBM(**shared, random_state=seed),
        "deconvlab centered=True": lambda seed: BernoulliRBM(**shared, random_state=seed, centered=True),
    }
    for make in contenders.values():  # warm-up: imports, first-call allocations
        make(0).fit(X_train[:100])

    results = {name: {"time": [], "score": [], "exact": []} for name in contenders}
    for seed in range(args.seeds):
        names = list(contenders) if seed % 2 == 0 else list(reversed(contenders))
        for name in names:
            seconds, model = timed_fit(contenders[name](seed), X_train)
            score, exact = held_out_scores(model, X_test)
            results[name]["time"].append(seconds)
            results[name]["score"].append(score)
            results[name]["exact"].append(exact)

    print(f"digits: {len(X_train)} train / {len(X_test)} held out, {X_train.shape[1]} pixels; {shared}; "
          f"{args.seeds} seeds")  # fmt: skip
    print(f"{'model':<28} {'fit time (median)':>18} {'score_samples':>16} {'exact PL':>16}")
    for name, r in results.items():
        print(
            f"{name:<28} {statistics.median(r['time']):>16.3f} s "
            f"{np.mean(r['score']):>9.2f} +- {np.std(r['score']) / np.sqrt(args.seeds):.2f} "
            f"{np.mean(r['exact']):>9.2f} +- {np.std(r['exact']) / np.sqrt(args.seeds):.2f}"
        )
    reference = results["scikit-learn"]
    for name in list(contenders)[1:]:
        r = results[name]
        speedup = [a / b for a, b in zip(reference["time"], r["time"], strict=True)]
        gain = np.subtract(r["exact"], reference["exact"])
        print(
            f"{name}: {statistics.median(speedup):.2f}x faster than scikit-learn (median of per-seed ratios, "
            f"goal >= 1, aim 3); exact held-out PL {np.mean(gain):+.2f} +- "
            f"{np.std(gain) / np.sqrt(args.seeds):.2f} per digit vs scikit-learn (goal >= 0)"
        )


if __name__ == "__main__":
    main()
