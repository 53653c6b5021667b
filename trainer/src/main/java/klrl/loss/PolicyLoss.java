package klrl.loss;

import ai.djl.ndarray.NDArray;
import java.util.LinkedHashMap;
import java.util.Map;

/** Policy-gradient losses (verl's compute_policy_loss conventions). */
public final class PolicyLoss {
    private PolicyLoss() {}

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
        NDArray loss = b.aggregate(pg, c.aggregation());
        m.put("loss_policy", loss.toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble());
        m.put("clip_fraction", LossTerm.maskedMean(pg2.gt(pg1).toType(a.getDataType(), false), mask));
        m.put("ppo_kl", LossTerm.maskedMean(logRatio.neg(), mask));
        return new LossTerm.Out(loss, m);
    }
}
