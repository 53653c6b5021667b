package klrl.kl;

import ai.djl.ndarray.NDArray;
import java.util.List;
import klrl.util.Nd;
import klrl.util.UserError;

/**
 * Per-token estimators of KL(π‖π_ref) from d = log π(y_t) − log π_ref(y_t), parsed once from a name.
 * A sealed hierarchy parsed once rather than string dispatch: a typo fails at start-up listing the
 * valid names, and a new estimator is one record plus its entry in {@link #ALL}.
 *
 * <p>Safeguards (on in training, off in the exact toy): k3 clamps −d to [−20, 20] before exp and its
 * result to [−10, 10], as verl's low_var_kl does, so one token with a huge ratio cannot overflow the
 * loss; outside those ranges the estimate saturates and its gradient is zero.
 */
public sealed interface KlEstimator {
    String name();

    /**
     * The estimate per token, [B,T], differentiable through {@code logp}.
     *
     * @param fullKl exact per-token KL Σ_v π log(π/π_ref) from full logits, [B,T]; only {@link Full} reads it
     */
    NDArray perToken(NDArray logp, NDArray refLogp, NDArray fullKl, boolean safeguards);

    /** Whether {@link #perToken} reads the exact KL from full logits, which callers then compute. */
    default boolean needsFullLogits() {
        return false;
    }

    /** k1 = d: unbiased for KL, high variance, can be negative per token. */
    record K1() implements KlEstimator {
        public String name() {
            return "k1";
        }

        public NDArray perToken(NDArray logp, NDArray refLogp, NDArray fullKl, boolean safeguards) {
            return logp.sub(refLogp);
        }
    }

    /** k2 = d²/2: biased (its mean is not the KL), low variance; its gradient is that of a squared log-ratio. */
    record K2() implements KlEstimator {
        public String name() {
            return "k2";
        }

        public NDArray perToken(NDArray logp, NDArray refLogp, NDArray fullKl, boolean safeguards) {
            NDArray d = logp.sub(refLogp);
            return Nd.mul(d.mul(d), 0.5);
        }
    }

    /** k3 = exp(−d) − 1 + d (Schulman; verl's low_var_kl): unbiased for KL, non-negative, low variance. */
    record K3() implements KlEstimator {
        public String name() {
            return "k3";
        }

        public NDArray perToken(NDArray logp, NDArray refLogp, NDArray fullKl, boolean safeguards) {
            NDArray negD = refLogp.sub(logp);
            if (safeguards) {
                negD = negD.clip(-20, 20);
            }
            NDArray k = negD.exp().sub(negD).sub(1);
            return safeguards ? k.clip(-10, 10) : k;
        }
    }

    /** |d|: a biased magnitude estimate, kept for completeness (verl's "abs"). */
    record Abs() implements KlEstimator {
        public String name() {
            return "abs";
        }

        public NDArray perToken(NDArray logp, NDArray refLogp, NDArray fullKl, boolean safeguards) {
            return logp.sub(refLogp).abs();
        }
    }

    /** The exact per-token KL over the whole vocabulary, computed from full logits by the caller. */
    record Full() implements KlEstimator {
        public String name() {
            return "full";
        }

        @Override
        public boolean needsFullLogits() {
            return true;
        }

        public NDArray perToken(NDArray logp, NDArray refLogp, NDArray fullKl, boolean safeguards) {
            if (fullKl == null) {
                throw new IllegalStateException("kl estimator 'full' needs full-vocabulary KL from the caller");
            }
            return fullKl;
        }
    }

    List<KlEstimator> ALL = List.of(new K1(), new K2(), new K3(), new Abs(), new Full());

    static KlEstimator parse(String name) {
        String n = name.trim().toLowerCase(java.util.Locale.ROOT);
        // verl's spellings map onto ours so users can bring their configs
        n = switch (n) {
            case "kl" -> "k1";
            case "mse" -> "k2";
            case "low_var_kl" -> "k3";
            default -> n;
        };
        for (KlEstimator e : ALL) {
            if (e.name().equals(n)) {
                return e;
            }
        }
        throw new UserError("unknown KL estimator '" + name + "'; expected one of k1, k2, k3, abs, full"
                + " (verl's kl, mse, low_var_kl are accepted too)");
    }
}
