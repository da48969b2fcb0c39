"""Every default and threshold of provi, in one place (floor 1: imports nothing of provi).

Modules read these names; tests that need another value monkeypatch the module that uses it.
"""

import jaxlib.version

# --- the fit loop (provi.engine) ---------------------------------------------------------------
STEPS = 20_000  # most optimisation steps when `steps` is not given (early stopping ends most fits sooner)
LEARNING_RATE = 1e-2  # Adam's, for families (whitened at the start) and NumPyro guides
CHUNK_MAX = 10_000  # most steps in one compiled chunk (the size of its loss buffer)
CHUNK_SECONDS = 0.25  # chunk sizes aim at this much work between progress updates
CHUNK_MIN = 100  # fewest steps in an adaptive chunk
FIXED_CHUNK = 500  # steps per chunk when checkpointing, resuming or streaming batches
AVERAGE_MIN = 5_000  # after convergence, iterates are averaged over at least this many steps
CHECKPOINT_EVERY = 10  # chunks between checkpoints

# --- convergence (provi.engine.schedule.Convergence) -------------------------------------------
CONVERGENCE_WINDOW_MIN = 200
CONVERGENCE_WINDOW_MAX = 2000
CONVERGENCE_WINDOW_FRACTION = 20  # window = steps / this, within the bounds above
CONVERGENCE_Z = 2.0  # "still improving" means a drop of more than this many standard errors
CONVERGENCE_PATIENCE = 2  # checks in a row without improvement

# --- the start (provi.engine.start, provi.core.mode) -------------------------------------------
NEWTON_MAX_DIM = 200  # Newton's method (one Hessian per iteration) up to here; L-BFGS above
CURVATURE_MAX_DIM = 2000  # no dense Hessian (preconditioner) above this dimension
START_SCALE = 0.1  # the family's scales where no curvature is known (init="prior", "zero", ...)

# --- choosing a family (provi.programs, provi.auto) --------------------------------------------
FULLRANK_MAX_DIM = 200  # guide="auto": full-rank Gaussian up to here,
LOWRANK_MAX_DIM = 5_000  # low-rank up to here, mean-field above
AUTO_RANK = 10  # the rank of auto's low-rank family
FLOW_MAX_DIM = 200  # auto tries a flow when the Gaussian fails, up to this dimension
FLOW_LEARNING_RATE = 3e-3
FLOW_MAX_STEPS = 8_000
MODE_STARTS = 8  # auto: mode searches from this many more starts (half uniform on [-2, 2]^D, half
#                  from the fitted Gaussian widened 3x), up to NEWTON_MAX_DIM dimensions
MODE_MIN_WEIGHT = 0.01  # auto: a mode with less of the mass than this is left out of the mixture
MODE_MAX = 4  # auto: at most this many modes in the mixture
MODE_MAX_ITER = 50  # auto: Newton steps per extra start (a search that has not converged finds no mode)
MODE_MASS_DRAWS = 4_000  # auto: draws per mode for its mass (importance sampling from its Gaussian)

# --- importance-sampling diagnostics (provi.diagnostics) ---------------------------------------
KHAT_GOOD = 0.5  # below: the approximation is close to the posterior
KHAT_OK = 0.7  # below: PSIS-corrected estimates are reliable; at or above: do not trust
KHAT_DRAWS = 20_000  # draws for k-hat (fewer make it unstable near 0.5-0.7)
DRAW_BLOCK = 4_000  # results draw more than this many in blocks of it: one compiled program per size, and
#                    the first n draws of a larger set are the set of n (a k-hat on 4,000, then 20,000)
KHAT_FIRST_DRAWS = DRAW_BLOCK  # auto: k-hat on this many first; enough where it is far below KHAT_GOOD
DETERMINISTIC_BLOCK = 1_000  # deterministic sites are computed for this many draws at a time: one program for any n
LOG_WEIGHT_BLOCK = 2**26  # importance weights are computed in blocks of draws x data elements of about this size
PSIS_MIN_DRAWS = 16_000  # importance-weighted sds and tails need more draws than plain ones
COLLAPSE_THRESHOLD = 0.01  # a latent unit with activity below this is inactive (Burda et al. 2016)

# --- estimators (provi.estimators) -------------------------------------------------------------
MAX_ENUMERATE = 16  # the default estimator enumerates supports of at most this many values
MAX_BRANCHES = 256  # ... on sites of at most this many (coordinates x support values)
ENUMERATE_MAX_SUPPORT = 64  # Enumerate() refuses larger supports
QUADRATURE_NODES = 256  # Gauss-Legendre nodes of ImplicitReparam's quadrature CDF
MODEL_ENUMERATE_MAX_SUPPORT = 1024  # a model site marked for enumeration may have at most this many values
ENUMERATE_MEMORY_BUDGET = 2**31  # bytes: the largest log-density factor enumeration may create (checked before allocating)
DRAW_ENUMERATED_MAX_JOINT = 4096  # chains of enumerated sites are drawn (infer_discrete) up to this many joint states

# --- data (provi.core.plates) ------------------------------------------------------------------
EXACT_SUBSAMPLE_FRACTION = 0.125  # a minibatch of at least this fraction of its plate is drawn without replacement

# --- compilation (provi.engine.compile) --------------------------------------------------------
# LLVM at -O1 for the loop: its kernels run as fast as at the default level (measured on the eight
# schools and VAE steps) and compile faster.
LOOP_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
# XLA:CPU's MLIR fusion emitters take most of a small program's compile time: its older kernel
# emitters compile the same program in about half the time (a jitted IWAE gradient 0.72 -> 0.31 s
# at -O0; eight schools' cold default fit 4.1-4.5 -> 3.5-4.2 s with them in the programs that run
# once, in 4 pairs on a slow machine; 2.27 -> 2.19 s, ratio 1.00, in 4 pairs on a fast one:
# benchmarks/RESULTS.md), but their kernels run slower where it matters (training steps, CPU time, 16 alternating
# pairs: eight schools 1.07x, the VAE 1.5x, logistic regression 0.99x), so the loop and the draws
# keep the default ones. jaxlib 0.10.2, 2-core CPU. An option jaxlib does not know is an error and
# XLA is retiring the older emitters: set only on the jaxlib versions measured.
FAST_COMPILE_EMITTERS = {"xla_cpu_use_fusion_emitters": False} if jaxlib.version.__version__.startswith("0.10.") else {}
# programs that run once per fit (the start, auto's checks) skip LLVM's expensive passes, and
# compile with the emitters above
ONCE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
                         **FAST_COMPILE_EMITTERS}
COMPILED_CACHE_SIZE = 64  # compiled programs kept in the process (least recently used dropped)
# JAX's on-disk cache keeps programs that took this long to compile: all of them, since loading a
# small program costs less than compiling it (eight schools' second run in a new process: the fit
# 2.5 s with programs over 0.2 s cached, 2.1 s with all 23 cached; 230 kB on disk)
PERSISTENT_CACHE_MIN_SECONDS = 0.0
