"""`guide="auto"`: a default that is right without tuning, and says so when it cannot be.

The pipeline, for a model with D unconstrained dimensions:

1. **Start at the Laplace approximation.** The mode of the unconstrained log density (Newton, or
   L-BFGS in high dimension) and the curvature there whiten the space, which fixes scale and
   correlation before any stochastic step (`provi.engine.start`). A density with no
   mode (a funnel) falls back to an unwhitened start, with a note.
2. **Fit the Gaussian the dimension affords**: full-rank up to 200 dimensions, low-rank (10) up to
   5,000, mean-field above (`provi.defaults`), by the objective with early stopping on loss
   convergence.
3. **Check it with PSIS** (Pareto k-hat, with its Monte Carlo standard error,
   `provi.diagnostics.khat_se`: about 0.08 near 0.7 with 20,000 draws), on
   `provi.defaults.KHAT_FIRST_DRAWS` = 4,000 draws where that puts it below 0.5 by two standard
   errors, else on `KHAT_DRAWS` = 20,000 (each draw costs a pass over the data: on a logistic
   regression with 100,000 observations the check takes 0.9 s instead of 21). k-hat < 0.5: done.
4. **Otherwise (k-hat >= 0.5: the Gaussian is not close), non-centre the hierarchy**: where the
   model has latent loc-scale sites whose location or scale depends on other latent sites (a
   centred hierarchy, a funnel), refit the Gaussian on the model with those sites partially
   non-centred, each site's centredness learned with the variational parameters (the
   variationally inferred parameterisation of Gorinova, Moore & Hoffman 2020, through NumPyro's
   `LocScaleReparam(centered=None)`; `provi.core.reparam`), and keep it if its k-hat is lower;
   where the learned centredness stays below 0.25 (heading for 0), fit the fully non-centred
   form too. A latent multivariate normal whose mean or covariance depends on other latent
   sites (a Gaussian process's values given its hyperparameters) is non-centred fully, through
   the covariance's Cholesky factor, in the same refit.
   Results stay in the model's own parameterisation (the site is a deterministic site of the
   rewritten model; `{site}_decentered` is its new latent).
5. **Look for other modes** (`provi.auto.modes`), up to 200 dimensions, whatever k-hat said
   (PSIS cannot see a mode the fit never visits): Newton's method from several starts; where
   other modes carry mass, a Gaussian at each and their mixture weighted by importance-sampled
   masses (`provi.guides.ModeMixture`); where the fit sits in a minor mode, the main one instead.
6. **If the Gaussian is still not close, up to 200 dimensions, fit heavier tails**: a full-rank
   Student-t (`provi.guides.StudentT`, degrees of freedom learned) started at the best Gaussian,
   the same location, scale and whitening with 30 degrees of freedom; keep it if its k-hat is
   lower. On a 2-d Student-t posterior with 4 degrees of freedom the Gaussian's k-hat is 0.57;
   the Student-t learns df 4.0 and gets k-hat 0.13. Where the Gaussian is already usable (k-hat
   in [0.5, 0.7), below 0.7 by a standard error), its own k-hat draws, reweighted to the posterior
   by PSIS, first say how heavy the posterior's tails are (`provi.auto.tails`: the weighted
   maximum-likelihood df of a Student-t with the Gaussian's location and correlation); where that
   df is 30 or more (tails no heavier than the Gaussian's: 160-220 on non-centred eight schools,
   where the fitted Student-t had learned df 214 and not lowered k-hat), auto settles without the
   Student-t's fit, which costs about 2.5 s of compilation.
7. **If still not close, fit a flow** (RealNVP,
   path-gradient ELBO, early stopping) in the space whitened by the best Gaussian so far, so the
   flow starts *as* that Gaussian and learns only what it misses; keep whichever has the lower
   k-hat. Where the best fit is already usable (k-hat in [0.5, 0.7), below 0.7 by a standard
   error) and the Student-t did not lower k-hat by at least a standard error, auto settles
   without the flow: on non-centred eight schools (k-hat 0.52; Student-t 0.59, df 214) the flow
   came out at 0.62 and cost 2.2 s of the README's main job.
8. **Report.** The fit is usable when k-hat is below 0.7 by at least one standard error
   (`khat_usable`): then `summary()` gives PSIS-corrected (importance-weighted) moments and
   quantiles by default, which are reliable there (Vehtari et al. 2024). Otherwise the notes and
   `diagnostics()` say in words that the fit should not be trusted and what to try next
   (reparameterise, another family, more steps, float64). The k-hat, its standard error and the
   verdict are the same numbers from the same draws in auto's notes, `diagnostics()`,
   `summary()` and `sample(correct="psis")`.

Small models stay fast: a flow is fitted only where the Gaussian fails the k-hat check.
"""

from provi.auto.pipeline import fit_auto, path_elbo

__all__ = ["fit_auto", "path_elbo"]
