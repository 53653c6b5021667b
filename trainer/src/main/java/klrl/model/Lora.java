package klrl.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import java.util.SplittableRandom;

/**
 * A low-rank adapter on one linear weight W [out, in]: y = W·x + (α/r)·B·A·dropout(x), with A [r, in]
 * drawn like PEFT's kaiming-uniform default and B [out, r] zero, so a fresh adapter changes nothing.
 */
public final class Lora {
    public final NDArray a, b;
    public final float scale;
    public final float dropout;

    public Lora(NDArray a, NDArray b, float scale, float dropout) {
        this.a = a;
        this.b = b;
        this.scale = scale;
        this.dropout = dropout;
    }

    public static Lora init(NDManager m, long out, long in, int rank, double alpha, double dropout, DataType dtype,
                            SplittableRandom rng) {
        float[] av = new float[(int) (rank * in)];
        double bound = 1 / Math.sqrt(in); // kaiming_uniform(a=√5) on [r, in] gives U(−1/√in, 1/√in)
        for (int i = 0; i < av.length; i++) {
            av[i] = (float) rng.nextDouble(-bound, bound);
        }
        NDArray a = m.create(av, new Shape(rank, in)).toType(dtype, false);
        NDArray b = m.zeros(new Shape(out, rank), dtype);
        return new Lora(a, b, (float) (alpha / rank), (float) dropout);
    }

    /** The adapter's contribution for input x [..., in]. */
    NDArray apply(NDArray x, boolean training) {
        NDArray h = x;
        if (training && dropout > 0) {
            NDArray keep = x.getManager().randomUniform(0, 1, x.getShape(), x.getDataType()).gte(dropout)
                    .toType(x.getDataType(), false).div(1 - dropout); // mask is not differentiated
            h = x.mul(keep);
        }
        return klrl.util.Nd.mul(Decoder.linear(Decoder.linear(h, a, null), b, null), scale);
    }

    /** W + (α/r)·B·A, for merging into an exported checkpoint. */
    public NDArray merged(NDArray w) {
        return w.add(b.matMul(a).mul(scale));
    }
}
