package klrl.loss;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The KL term of the loss, as the placement says (nothing for reward/none), and the KL metrics
 * every run logs whatever the estimator: k1, k3 and a sample estimate of the forward KL(π_ref‖π).
 */
public final class KlLoss {
    private KlLoss() {}

    public static LossTerm.Out apply(TokenBatch b, LossConfig c) {
        NDArray k = c.klEstimator().perToken(b.logp(), b.refLogp(), b.fullKl(), c.klSafeguards());
        NDArray loss = c.klPlacement().loss(k, b.logp(), b.mask(), b.weights(c.aggregation()), b.isWeights(), c.klCoef());
        // The run's KL metrics come from the rollout (behaviour vs reference, before any update);
        // this term reports only its own loss.
        Map<String, Double> m = new LinkedHashMap<>();
        if (loss != null) {
            m.put("loss_kl", loss.toType(DataType.FLOAT64, false).getDouble());
        }
        return new LossTerm.Out(loss, m);
    }

    /**
     * Mean per-token k1 and k3 of KL(π‖π_ref), and kl_forward = mean of ρ·log ρ with ρ = π_ref/π
     * (an unbiased sample estimate of KL(π_ref‖π) under y ~ π: E_π[ρ log ρ] = Σ π_ref log(π_ref/π)).
     */
    public static Map<String, Double> metrics(NDArray logp, NDArray refLogp, NDArray mask) {
        NDArray d = logp.sub(refLogp);
        NDArray negD = d.neg().clip(-20, 20);
        NDArray k3 = negD.exp().sub(negD).sub(1f);
        NDArray fwd = negD.exp().mul(negD);
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("kl_k1", LossTerm.maskedMean(d, mask));
        m.put("kl_k3", LossTerm.maskedMean(k3, mask));
        m.put("kl_forward", LossTerm.maskedMean(fwd, mask));
        return m;
    }
}
