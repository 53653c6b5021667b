package klrl.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import java.util.LinkedHashMap;
import java.util.Map;
import klrl.model.Casts;
import klrl.model.Decoder;

/** PPO's critic as a linear head on the policy trunk's final hidden states: V = h·w + b, [N,R]. */
public final class ValueHead {
    public final NDArray weight, bias;

    public ValueHead(NDManager m, int hidden, long seed) {
        float[] w = new float[hidden];
        java.util.SplittableRandom r = new java.util.SplittableRandom(seed);
        for (int i = 0; i < hidden; i++) {
            w[i] = (float) (klrl.model.TinyModel.gaussian(r) / Math.sqrt(hidden) * 0.1);
        }
        weight = m.create(w, new Shape(1, hidden));
        bias = m.zeros(new Shape(1), DataType.FLOAT32);
    }

    private ValueHead(NDArray weight, NDArray bias) {
        this.weight = weight;
        this.bias = bias;
    }

    /** A copy in {@code m}, on its device (a data-parallel replica's head). */
    public ValueHead replica(NDManager m) {
        return new ValueHead(Decoder.copy(weight, m), Decoder.copy(bias, m));
    }

    public NDArray apply(NDArray hidden) {
        NDArray h = Casts.to(hidden, DataType.FLOAT32);
        return Decoder.linear(h, weight, bias).squeeze(2);
    }

    public Map<String, NDArray> parameters() {
        Map<String, NDArray> p = new LinkedHashMap<>();
        p.put("value_head.weight", weight);
        p.put("value_head.bias", bias);
        return p;
    }
}
