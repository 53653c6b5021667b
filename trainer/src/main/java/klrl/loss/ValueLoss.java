package klrl.loss;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import java.util.LinkedHashMap;
import java.util.Map;

/** PPO's clipped value loss: ½·coef·agg(max((V−R)², (clip(V, V_old±ε)−R)²)), as verl's compute_value_loss. */
public final class ValueLoss {
    private ValueLoss() {}

    public static LossTerm.Out apply(TokenBatch b, LossConfig c) {
        NDArray v = b.values(), r = b.returns();
        NDArray l1 = v.sub(r).square();
        NDArray l = l1;
        Map<String, Double> m = new LinkedHashMap<>();
        if (c.valueClip() != null) {
            float eps = c.valueClip().floatValue();
            NDArray vc = v.minimum(b.oldValues().add(eps)).maximum(b.oldValues().sub(eps));
            NDArray l2 = vc.sub(r).square();
            l = l1.maximum(l2);
            m.put("value_clip_fraction", LossTerm.maskedMean(l2.gt(l1).toType(v.getDataType(), false), b.mask()));
        }
        NDArray loss = klrl.util.Nd.mul(b.aggregate(l, c.aggregation()), 0.5 * c.valueCoef());
        m.put("loss_value", loss.toType(DataType.FLOAT64, false).getDouble());
        return new LossTerm.Out(loss, m);
    }
}
