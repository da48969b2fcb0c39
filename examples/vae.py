"""VAE (Kingma & Welling 2014) and IWAE (Burda et al. 2016, with DReG gradients) on binarised digits.

The same architecture is trained for the same number of steps with the ELBO and with the
importance-weighted bound (k particles per data point, doubly reparameterised gradients); each
model's held-out log-likelihood is then estimated by importance sampling with k = 1000 draws from its
encoder. As in the literature, the IWAE-trained model should have the higher held-out likelihood.
The data set is small (1,497 training images): the full run stops at 3,000 steps (about 250 epochs),
before both models overfit (at 20,000 steps the training bound keeps improving but the held-out
likelihood falls, IWAE's faster).

    python examples/vae.py            # full run
    python examples/vae.py --quick    # seconds
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import provi  # noqa: E402
from vae_common import emit, gaussian_vae, heldout_ll, load_digits, parser, train  # noqa: E402


def run(steps: int, k_train: int, k_eval: int, batch: int = 128, seed: int = 0, objective_iwae=None, hidden: int = 128, dz: int = 8):
    x_train, x_test, _, _ = load_digits(seed)
    out = {}
    for name, objective in (("elbo", provi.ELBO()), ("iwae", objective_iwae or provi.DReG(k=k_train, plate="data"))):
        model, guide = gaussian_vae(dz=dz, hidden=hidden, seed=seed)
        res, secs = train(model, guide, x_train, objective, steps, batch, seed=seed)
        out[f"{name}_trained_test_ll"] = heldout_ll(res, x_test, k_eval)
        out[f"{name}_train_seconds"] = secs
        out[f"{name}_final_loss_per_example"] = float(res.final_loss / x_train.shape[0])
        if name == "elbo":
            out["elbo_active_units"] = res.posterior_collapse().active_units
    out["iwae_minus_elbo_nats"] = out["iwae_trained_test_ll"] - out["elbo_trained_test_ll"]
    return out


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    steps = args.steps or (300 if args.quick else 3_000)
    k_eval = 100 if args.quick else 1000
    results = run(steps, k_train=8 if not args.quick else 4, k_eval=k_eval, seed=args.seed)
    results.update(steps=steps, k_eval=k_eval)
    emit(results, args.json)


if __name__ == "__main__":

    main()
