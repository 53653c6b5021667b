package klrl.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;

/** Rotary position embeddings in HF's rotate-half convention, with Llama-3 frequency scaling. */
final class Rope {
    private Rope() {}

    /** inv_freq[i] = θ^(−2i/D), rescaled per wavelength band for rope_type llama3 (HF's _compute_llama3_parameters). */
    static float[] inverseFrequencies(ModelConfig c) {
        int dim = c.headDim();
        float[] inv = new float[dim / 2];
        for (int i = 0; i < inv.length; i++) {
            float exponent = (float) (2 * i) / (float) dim; // HF: arange(0, dim, 2).float() / dim in fp32
            inv[i] = (float) (1.0 / Math.pow(c.ropeTheta(), exponent));
        }
        ModelConfig.RopeScaling s = c.ropeScaling();
        if (s != null) {
            double lowWavelen = s.originalMaxPositions() / s.lowFreqFactor();
            double highWavelen = s.originalMaxPositions() / s.highFreqFactor();
            for (int i = 0; i < inv.length; i++) {
                double f = inv[i];
                double wavelen = 2 * Math.PI / f;
                double scaled = wavelen > lowWavelen ? f / s.factor() : f;
                if (!(wavelen < highWavelen) && !(wavelen > lowWavelen)) {
                    // medium band: interpolate between scaled and unscaled
                    double smooth = (s.originalMaxPositions() / wavelen - s.lowFreqFactor())
                            / (s.highFreqFactor() - s.lowFreqFactor());
                    scaled = (1 - smooth) * scaled / s.factor() + smooth * scaled;
                }
                inv[i] = (float) scaled;
            }
        }
        return inv;
    }

    /** cos and sin tables [L,D] for positions 0 … L−1: fp32 angles position·inv_freq as HF computes them, then dtype. */
    static NDArray[] table(NDManager m, int len, float[] invFreq, DataType dtype) {
        NDArray inv = m.create(invFreq).reshape(1, invFreq.length);
        NDArray freqs = m.arange(0, len, 1, DataType.INT64).toType(DataType.FLOAT32, false).reshape(len, 1).mul(inv); // [L,D/2]
        NDArray emb = NDArrays.concat(new NDList(freqs, freqs), 1);                                                // [L,D]
        NDArray cos = emb.cos(), sin = emb.sin();
        NDArray[] out = {cos.toType(dtype, true), sin.toType(dtype, true)};
        for (NDArray t : new NDArray[] {inv, freqs, emb, cos, sin}) {
            t.close();
        }
        return out;
    }

    /**
     * The signed permutation R [D,D] with x·R = rotate_half(x) = cat(−x₂, x₁): one matmul instead of
     * split, neg and concat (exact: each output is one input times ±1).
     */
    static NDArray rotation(NDArray like, int d) {
        float[] r = new float[d * d];
        int half = d / 2;
        for (int j = 0; j < half; j++) {
            r[(j + half) * d + j] = -1f;   // out[j] = −x[j + D/2]
            r[j * d + j + half] = 1f;      // out[j + D/2] = x[j]
        }
        NDArray m = like.getManager().create(r, new ai.djl.ndarray.types.Shape(d, d));
        return m.getDataType() == like.getDataType() ? m : m.toType(like.getDataType(), false);
    }

    /** x·cos + rotate_half(x)·sin. */
    static NDArray apply(NDArray x, NDArray cos, NDArray sin, NDArray rot) {
        return x.mul(cos).add(x.matMul(rot).mul(sin));
    }
}
