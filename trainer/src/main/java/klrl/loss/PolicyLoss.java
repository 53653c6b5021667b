package klrl.loss;

import ai.djl.ndarray.NDArray;
import java.util.LinkedHashMap;
import java.util.Map;

/** Policy-gradient losses (verl's compute_policy_loss conventions). */
public final class PolicyLoss {
    private PolicyLoss() {}

    /** algorithm.policy_loss: which importance ratio the clipped surrogate uses. */
    public enum Kind {
        VANILLA("vanilla", PolicyLoss::ppoClip),
        GSPO("gspo", PolicyLoss::gspo);

        public final String id;
        public final LossTerm term;

        Kind(String id, LossTerm term) {
            this.id = id;
            this.term = term;
        }

        public static Kind parse(String s) {
            for (Kind k : values()) {
                if (k.id.equals(s)) {
                    return k;
                }
            }
            throw new klrl.util.UserError("unknown policy_loss '" + s + "'; expected vanilla or gspo");
        }
    }

    /**
     * PPO's clipped surrogate with separate ε_low/ε_high and optional dual clip:
     * ℓ = max(−A·r, −A·clip(r, 1−ε_low, 1+ε_high)), and for A &lt; 0 additionally min(ℓ, −A·c).
     * On-policy (r ≡ 1 with gradient ∇log π) this is REINFORCE: ∇ℓ = −A·∇log π.
     */
    public static LossTerm.Out ppoClip(TokenBatch b, LossConfig c) {
        NDArray a = b.advantages(), mask = b.mask();
        NDArray logRatio = b.logp().sub(b.oldLogp()).clip(-20, 20); // exp overflow guard, as verl
        NDArray ratio = logRatio.exp();
        NDArray pg1 = a.neg().mul(ratio);
        NDArray pg2 = a.neg().mul(ratio.clip(1 - c.clipLow(), 1 + c.clipHigh()));
        NDArray clipped = pg1.maximum(pg2);
        NDArray pg = clipped;
        Map<String, Double> m = new LinkedHashMap<>();
        if (c.dualClip() != null) {
            NDArray pg3 = a.neg().mul(c.dualClip().floatValue());
            NDArray neg = a.lt(0f).toType(a.getDataType(), false);
            pg = neg.mul(clipped.minimum(pg3)).add(neg.neg().add(1f).mul(clipped));
            m.put("clip_fraction_lower", LossTerm.maskedMean(clipped.gt(pg3).toType(a.getDataType(), false).mul(neg), mask));
        }
        NDArray loss = b.aggregate(b.corrected(pg), c.aggregation()); // verl's place for the rollout weights: after the clip
        m.put("loss_policy", loss.toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble());
        m.put("clip_fraction", LossTerm.maskedMean(pg2.gt(pg1).toType(a.getDataType(), false), mask));
        m.put("ppo_kl", LossTerm.maskedMean(logRatio.neg(), mask));
        return new LossTerm.Out(loss, m);
    }

    /**
     * GSPO (arXiv 2507.18071), in its token-level gradient form as verl writes it: every token of
     * sequence i carries the sequence's ratio s_i = exp(mean_t(log π − log π_old)) as a value, and its
     * own log π for the gradient: log s_{i,t} = sg(log s_i) + log π_t − sg(log π_t), capped at 10;
     * ℓ = max(−A·s_{i,t}, −A·clip(s_{i,t}, 1−ε_low, 1+ε_high)), aggregated per sequence
     * (seq-mean-token-mean, required by the config). Then ∇ of sequence i's part is
     * −A_i·s_i·mean_t ∇log π_t where unclipped: the paper's ∇ of s_i·A_i for sequence-level A_i.
     */
    public static LossTerm.Out gspo(TokenBatch b, LossConfig c) {
        NDArray a = b.advantages(), mask = b.mask();
        NDArray logRatio = b.logp().sub(b.oldLogp());
        NDArray seqLogRatio = logRatio.mul(mask).sum(new int[] {1}, true).div(mask.sum(new int[] {1}, true).maximum(1f));
        NDArray logS = b.logp().sub(b.logp().stopGradient()).add(seqLogRatio.stopGradient()).minimum(10f);
        NDArray s = logS.exp();
        NDArray pg1 = a.neg().mul(s);
        NDArray pg2 = a.neg().mul(s.clip(1 - c.clipLow(), 1 + c.clipHigh()));
        NDArray loss = b.aggregate(b.corrected(pg1.maximum(pg2)), c.aggregation());
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("loss_policy", loss.toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble());
        m.put("clip_fraction", LossTerm.maskedMean(pg2.gt(pg1).toType(a.getDataType(), false), mask));
        m.put("ppo_kl", LossTerm.maskedMean(logRatio.neg(), mask));
        return new LossTerm.Out(loss, m);
    }
}
