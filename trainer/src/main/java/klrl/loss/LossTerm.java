package klrl.loss;

import ai.djl.ndarray.NDArray;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One pluggable piece of the loss: (batch, config) → (loss, metrics). The trainer sums the terms of
 * {@link #forConfig} and merges their metrics; it has no other knowledge of any of them.
 */
public interface LossTerm {

    /** A term's contribution: a scalar (null when it adds nothing) and named metrics. */
    record Out(NDArray loss, Map<String, Double> metrics) {}

    Out apply(TokenBatch batch, LossConfig config);

    static List<LossTerm> forConfig(LossConfig c, boolean withCritic) {
        var terms = new java.util.ArrayList<LossTerm>(List.of(c.policyLoss().term, KlLoss::apply));
        if (c.entropyCoef() != 0) {
            terms.add(EntropyBonus::apply);
        }
        if (withCritic) {
            terms.add(ValueLoss::apply);
        }
        return terms;
    }

    /** Runs every term and returns the summed loss and all metrics (loss_total included). */
    static Out total(List<LossTerm> terms, TokenBatch b, LossConfig c) {
        NDArray sum = null;
        Map<String, Double> m = new LinkedHashMap<>();
        for (LossTerm t : terms) {
            Out o = t.apply(b, c);
            if (o.loss() != null) {
                sum = sum == null ? o.loss() : sum.add(o.loss());
            }
            m.putAll(o.metrics());
        }
        m.put("loss_total", sum == null ? 0.0 : sum.toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble());
        return new Out(sum, m);
    }

    static double maskedMean(NDArray x, NDArray mask) {
        return x.mul(mask).sum().div(mask.sum().maximum(1f)).toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble();
    }
}
