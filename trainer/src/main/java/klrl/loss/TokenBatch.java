package klrl.loss;

import ai.djl.ndarray.NDArray;

/**
 * The per-token tensors of one (micro-)batch, all [B,T] over right-padded responses. Fields a term
 * does not need may be null (values for critic-free algorithms, fullKl unless the estimator is "full").
 *
 * @param logp       log π_θ(y_t) under the policy being trained — differentiable
 * @param oldLogp    log-probs of the policy that sampled (behaviour policy), detached
 * @param refLogp    log π_ref(y_t), detached
 * @param advantages detached
 * @param mask       1 for response tokens, 0 for padding
 * @param entropy    per-token entropy of π_θ, differentiable (null when no entropy bonus)
 * @param fullKl     exact per-token KL(π_θ‖π_ref) over the vocabulary, differentiable (estimator "full")
 * @param values     critic predictions, differentiable (PPO)
 * @param oldValues  critic predictions at rollout time, detached (PPO)
 * @param returns    value targets, detached (PPO)
 * @param weights    aggregation weights [B,T] precomputed over a whole mini-batch and sliced for this
 *                   micro-batch, so accumulated micro-batch losses equal the mini-batch loss; null =
 *                   computed from this batch's mask
 * @param isWeights  the rollout correction's per-token weights [B,T], detached (algorithm.rollout_correction:
 *                   truncated π_old/μ, token or sequence, 0 where rejected); they multiply each token's
 *                   policy-gradient term and the KL term of the loss; null = none
 */
public record TokenBatch(NDArray logp, NDArray oldLogp, NDArray refLogp, NDArray advantages, NDArray mask,
                         NDArray entropy, NDArray fullKl, NDArray values, NDArray oldValues, NDArray returns,
                         NDArray weights, NDArray isWeights) {

    public TokenBatch(NDArray logp, NDArray oldLogp, NDArray refLogp, NDArray advantages, NDArray mask,
                      NDArray entropy, NDArray fullKl, NDArray values, NDArray oldValues, NDArray returns) {
        this(logp, oldLogp, refLogp, advantages, mask, entropy, fullKl, values, oldValues, returns, null, null);
    }

    /** The per-token terms times the rollout correction's weights (unchanged without a correction). */
    public NDArray corrected(NDArray perToken) {
        return isWeights == null ? perToken : perToken.mul(isWeights);
    }

    public NDArray weights(Aggregation a) {
        return weights != null ? weights : a.weights(mask);
    }

    /** Σ w·x with this batch's aggregation weights. */
    public NDArray aggregate(NDArray perToken, Aggregation a) {
        return perToken.mul(weights(a)).sum();
    }
}
