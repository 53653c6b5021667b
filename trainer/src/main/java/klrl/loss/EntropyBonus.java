package klrl.loss;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import java.util.Map;

/** −c·agg(H_t): rewards keeping the policy's per-token entropy up. */
public final class EntropyBonus {
    private EntropyBonus() {}

    public static LossTerm.Out apply(TokenBatch b, LossConfig c) {
        NDArray h = b.aggregate(b.entropy(), c.aggregation());
        NDArray loss = klrl.util.Nd.mul(h, -c.entropyCoef());
        return new LossTerm.Out(loss, Map.of("loss_entropy", loss.toType(DataType.FLOAT64, false).getDouble()));
    }
}
