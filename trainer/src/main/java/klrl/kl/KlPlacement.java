package klrl.kl;

import ai.djl.ndarray.NDArray;
import java.util.List;
import klrl.util.Nd;
import klrl.util.UserError;

/**
 * Where the KL term enters the objective. The two hooks are the only places the trainer touches it:
 * {@link #shapeRewards} before advantages, {@link #loss} inside the differentiated loss.
 */
public sealed interface KlPlacement {
    String name();

    /** Token-level rewards after the KL penalty: scores − β·k (k detached), or scores unchanged. */
    NDArray shapeRewards(NDArray tokenScores, NDArray k, NDArray mask, double beta);

    /** Whether {@link #shapeRewards} changes the rewards (then the estimate of the behaviour policy is needed there). */
    default boolean shapesRewards() {
        return false;
    }

    /**
     * The KL part of the loss, or null when the placement adds none.
     *
     * @param k         per-token estimate [B,T], differentiable through π
     * @param logp      per-token log π(y_t) [B,T], differentiable
     * @param weights   aggregation weights [B,T] (the loss package's Aggregation): loss = Σ w·k
     * @param isWeights the rollout correction's weights [B,T] (detached), or null: each token's terms —
     *                  its k and its log π in the score-function term — are multiplied by its weight, as
     *                  the policy-gradient term is
     */
    NDArray loss(NDArray k, NDArray logp, NDArray mask, NDArray weights, NDArray isWeights, double beta);

    /** {@link #loss} without a rollout correction. */
    default NDArray loss(NDArray k, NDArray logp, NDArray mask, NDArray weights, double beta) {
        return loss(k, logp, mask, weights, null, beta);
    }

    private static NDArray times(NDArray x, NDArray isWeights) {
        return isWeights == null ? x : x.mul(isWeights);
    }

    /** −β·k_t added to the reward; the gradient is the score function (unbiased for k1). */
    record Reward() implements KlPlacement {
        public String name() {
            return "reward";
        }

        @Override
        public boolean shapesRewards() {
            return true;
        }

        public NDArray shapeRewards(NDArray s, NDArray k, NDArray mask, double beta) {
            return s.sub(Nd.mul(k.stopGradient().mul(mask), beta));
        }

        public NDArray loss(NDArray k, NDArray logp, NDArray mask, NDArray w, NDArray is, double beta) {
            return null;
        }
    }

    /** β·agg(k) differentiated through π only (verl/OpenRLHF's use_kl_loss): biased for k1 and k3. */
    record Loss() implements KlPlacement {
        public String name() {
            return "loss";
        }

        public NDArray shapeRewards(NDArray s, NDArray k, NDArray mask, double beta) {
            return s;
        }

        public NDArray loss(NDArray k, NDArray logp, NDArray mask, NDArray w, NDArray is, double beta) {
            return Nd.mul(times(k, is).mul(w).sum(), beta);
        }
    }

    /**
     * In-loss plus the score-function term sg(Σ_t w_t k_t)·Σ_t log π(y_t) per sequence, so the
     * expected gradient is ∇E[Σ_t w_t k_t]: the gradient of the KL for k1 and k3 (whose means are the KL).
     * With rollout weights ρ_t both parts take them token by token — Σ_t w_t ρ_t k_t +
     * sg(Σ_t w_t k_t)·Σ_t ρ_t log π(y_t) — so token weights correct the score-function term as they
     * correct the policy's, and a sequence weight multiplies the whole.
     */
    record LossUnbiased() implements KlPlacement {
        public String name() {
            return "loss-unbiased";
        }

        public NDArray shapeRewards(NDArray s, NDArray k, NDArray mask, double beta) {
            return s;
        }

        public NDArray loss(NDArray k, NDArray logp, NDArray mask, NDArray w, NDArray is, double beta) {
            NDArray perSeq = k.mul(w).sum(new int[] {1});                  // [B]
            NDArray seqLogp = times(logp, is).mul(mask).sum(new int[] {1}); // [B] log π(y), each token weighted
            NDArray direct = is == null ? perSeq : times(k, is).mul(w).sum(new int[] {1});
            return Nd.mul(direct.sum().add(perSeq.stopGradient().mul(seqLogp).sum()), beta);
        }
    }

    /** No KL term (the metrics still report k1 and k3). */
    record None() implements KlPlacement {
        public String name() {
            return "none";
        }

        public NDArray shapeRewards(NDArray s, NDArray k, NDArray mask, double beta) {
            return s;
        }

        public NDArray loss(NDArray k, NDArray logp, NDArray mask, NDArray w, NDArray is, double beta) {
            return null;
        }
    }

    List<KlPlacement> ALL = List.of(new Reward(), new Loss(), new LossUnbiased(), new None());

    static KlPlacement parse(String name) {
        for (KlPlacement p : ALL) {
            if (p.name().equals(name.trim().toLowerCase(java.util.Locale.ROOT))) {
                return p;
            }
        }
        throw new UserError("unknown KL placement '" + name + "'; expected one of reward, loss, loss-unbiased, none");
    }
}
