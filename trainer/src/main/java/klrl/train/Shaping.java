package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.Map;
import klrl.advantage.AdvantageEstimator;
import klrl.kl.KlEstimator;
import klrl.loss.KlLoss;
import klrl.loss.LossConfig;

/**
 * Rewards to advantages: the per-token KL of the behaviour policy (as verl estimates it), the
 * outcome score on each response's last token, the placement's reward shaping (−β·k_t when the KL is
 * in the reward), then the advantage estimator. Everything here is detached.
 */
final class Shaping {
    private Shaping() {}

    /**
     * @param advantages, returns [rows·R] per token
     * @param meanKl      the mean per-token estimate, which the adaptive KL controller follows
     * @param klMetrics   kl_k1, kl_k3, kl_forward of the behaviour policy against the reference
     */
    record Out(float[] advantages, float[] returns, double meanKl, Map<String, Double> klMetrics) {}

    /**
     * The rollout correction's per-token weights [rows·R] from π_old ({@code oldLogp}) and the log-probs
     * of what each sample was drawn from, its metrics into {@code m}; null when no correction is asked.
     */
    static float[] rolloutWeights(SequenceBatch all, float[] oldLogp, java.util.List<klrl.rollout.Sample> samples,
                                  klrl.loss.RolloutWeights correction, StepMetrics m) {
        if (!correction.active()) {
            return null;
        }
        float[] mu = all.perToken(samples.stream().map(klrl.rollout.Sample::samplerLogprobs).toList());
        klrl.loss.RolloutWeights.Out w = correction.apply(oldLogp, mu, all.responseMask(), all.rows(), all.r());
        m.putAll(w.metrics());
        return w.weights();
    }

    /**
     * @param oldLogp    behaviour log-probs per token
     * @param ref        the reference pass (its exact KL is read when the estimator needs full logits)
     * @param scores     the outcome reward of each row
     * @param groups     the prompt of each row
     */
    static Out apply(SequenceBatch all, float[] oldLogp, ReferencePass.Out ref, double[] scores, int[] groups,
                     LossConfig lc, AdvantageEstimator advantage, AdvantageEstimator.Config advCfg, NDManager root) {
        try (NDManager mm = root.newSubManager()) {
            NDArray mask = all.mask(mm), old = all.tensor(mm, oldLogp), refLogp = all.tensor(mm, ref.refLogp());
            Map<String, Double> klMetrics = KlLoss.metrics(old, refLogp, mask);
            NDArray k = perToken(lc, all, old, refLogp, ref.exactKl(), mm);
            NDArray tokenRewards = lc.klPlacement().shapeRewards(all.tensor(mm, lastTokenScores(all, scores)), k, mask, lc.klCoef());
            AdvantageEstimator.Result res = advantage.compute(tokenRewards, mask, groups,
                    ref.oldValues() != null ? all.tensor(mm, ref.oldValues()) : null, advCfg);
            double meanKl = k.mul(mask).sum().div(mask.sum()).getFloat();
            return new Out(res.advantages().toFloatArray(), res.returns().toFloatArray(), meanKl, klMetrics);
        }
    }

    /**
     * The estimator's per-token KL. An estimator that needs full logits has them here only when it
     * shapes the reward; elsewhere this value only feeds the adaptive controller, and k1 stands in.
     */
    private static NDArray perToken(LossConfig lc, SequenceBatch all, NDArray old, NDArray ref, float[] exactKl, NDManager mm) {
        KlEstimator est = lc.klEstimator();
        if (est.needsFullLogits() && exactKl == null) {
            return new KlEstimator.K1().perToken(old, ref, null, lc.klSafeguards());
        }
        return est.perToken(old, ref, exactKl != null ? all.tensor(mm, exactKl) : null, lc.klSafeguards());
    }

    /** The outcome score on each response's last token, zero elsewhere. */
    private static float[] lastTokenScores(SequenceBatch all, double[] scores) {
        int r = all.r();
        float[] s = new float[all.rows() * r];
        float[] mask = all.responseMask();
        for (int i = 0; i < all.rows(); i++) {
            int len = 0;
            while (len < r && mask[i * r + len] > 0) {
                len++;
            }
            if (len > 0) {
                s[i * r + len - 1] = (float) scores[i];
            }
        }
        return s;
    }

    /**
     * DAPO's overlong shaping (verl's DAPO reward manager): with expected = max_new_tokens − len, a
     * response of L tokens gets min(−(L − expected)/len · penalty, 0) added to its reward; the
     * accuracy stays the verifier's. Off (the scores as they are) when algorithm.overlong_buffer.len is 0.
     */
    static java.util.List<klrl.reward.RewardPool.Scored> overlong(java.util.List<klrl.reward.RewardPool.Scored> scores,
            java.util.List<klrl.rollout.Sample> samples, klrl.config.TrainConfig cfg) {
        if (cfg.algorithm().overlongBuffer().len() == 0) {
            return scores;
        }
        java.util.List<klrl.reward.RewardPool.Scored> out = new java.util.ArrayList<>(scores.size());
        for (int i = 0; i < scores.size(); i++) {
            var s = scores.get(i);
            double penalty = overlongPenalty(samples.get(i).responseIds().length, cfg);
            out.add(new klrl.reward.RewardPool.Scored(s.reward() + penalty, s.correct(), s.timedOut(), s.extracted()));
        }
        return out;
    }

    /** The overlong penalty of a response of {@code length} tokens (0 with the shaping off). */
    static double overlongPenalty(int length, klrl.config.TrainConfig cfg) {
        var ob = cfg.algorithm().overlongBuffer();
        return ob.len() == 0 ? 0 : Math.min(-(length - (cfg.rollout().maxNewTokens() - ob.len())) / (double) ob.len() * ob.penalty(), 0);
    }

    /** The batch with the responses cut at max_new_tokens out of the loss (their masks zeroed), for TRL's mask_truncated_completions. */
    static SequenceBatch maskTruncated(SequenceBatch all, java.util.List<klrl.rollout.Sample> samples) {
        float[] mask = all.responseMask().clone();
        for (int i = 0; i < samples.size(); i++) {
            if ("length".equals(samples.get(i).finishReason())) {
                java.util.Arrays.fill(mask, i * all.r(), (i + 1) * all.r(), 0f);
            }
        }
        return new SequenceBatch(all.tokens(), all.valid(), mask, all.responseIds(), all.rows(), all.p(), all.r(), all.starts());
    }
}
