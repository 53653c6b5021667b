package klrl.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.ndarray.types.Shape;

/**
 * Preallocated per-layer keys [B,K,D,capacity] and values [B,K,capacity,D], written in place. Nothing
 * is copied or reallocated per token; closing the manager that owns it frees it.
 *
 * <p>Keys are kept transposed because attention reads them as the right operand of q·Kᵀ: a prefix
 * of [D,capacity] rows is a plain row-major matrix to the GEMM, while a transposed view of [S,D]
 * rows sends MKL down a slower transposed-operand path (see src/site/markdown/benchmarks.md).
 */
public final class KvCache {
    private final NDArray[] keys, values;
    public final int capacity;

    private KvCache(NDArray[] keys, NDArray[] values, int capacity) {
        this.keys = keys;
        this.values = values;
        this.capacity = capacity;
    }

    /** Rows from, from+step, … below to, as views: writes through them land in this cache (the caller's scope closes the views). */
    public KvCache rows(int from, int to, int step) {
        NDArray[] k = new NDArray[keys.length], v = new NDArray[values.length];
        for (int i = 0; i < keys.length; i++) {
            k[i] = JniUtils.slice((PtNDArray) keys[i], 0, from, to, step);
            v[i] = JniUtils.slice((PtNDArray) values[i], 0, from, to, step);
        }
        return new KvCache(k, v, capacity);
    }

    /** Copies row g·n into rows g·n+1 … g·n+n−1 for every group g, in place (positions [0, end)). */
    public void copyFirstOfEach(int n, int end) {
        for (int i = 0; i < keys.length; i++) {
            // positions run along dim 3 of the keys [B,K,D,cap] and dim 2 of the values [B,K,cap,D]
            copyFirstOfEach(keys[i], 3, n, end);
            copyFirstOfEach(values[i], 2, n, end);
        }
    }

    private static void copyFirstOfEach(NDArray a, int posDim, int n, int end) {
        long[] hi = a.getShape().getShape().clone();
        hi[posDim] = end;
        try (NDArray first = JniUtils.slice((PtNDArray) a, 0, 0, hi[0], n);
             NDArray src = JniUtils.slice((PtNDArray) first, posDim, 0, end, 1)) {
            for (int j = 1; j < n; j++) {
                JniUtils.indexSet((PtNDArray) a, (PtNDArray) src, new long[] {j, 0, 0, 0}, hi, new long[] {n, 1, 1, 1});
            }
        }
    }

    public KvCache(Decoder model, NDManager manager, int batch, int capacity) {
        ModelConfig c = model.config;
        this.capacity = capacity;
        keys = new NDArray[c.numLayers()];
        values = new NDArray[c.numLayers()];
        Shape kShape = new Shape(batch, c.numKvHeads(), c.headDim(), capacity);
        Shape vShape = new Shape(batch, c.numKvHeads(), capacity, c.headDim());
        for (int i = 0; i < keys.length; i++) {
            ai.djl.Device d = model.placement().layer(i); // each layer's cache beside its weights
            keys[i] = manager.zeros(kShape, model.dtype, d);
            values[i] = manager.zeros(vShape, model.dtype, d);
        }
    }

    /** Writes keys and values [B,K,T,D] of cache positions [start, start+T). */
    void write(int layer, int start, NDArray k, NDArray v) {
        long t = k.getShape().get(2);
        if (start + t > capacity) {
            throw new IllegalStateException("KV cache overflow: " + (start + t) + " > capacity " + capacity);
        }
        // direct JNI slice calls: NDIndex strings are parsed in Java on every call, per layer and token
        long[] shape = values[layer].getShape().getShape();
        long[] one = {1, 1, 1, 1};
        JniUtils.indexSet((PtNDArray) keys[layer], (PtNDArray) k.transpose(0, 1, 3, 2),
                new long[] {0, 0, 0, start}, new long[] {shape[0], shape[1], shape[3], start + t}, one);
        JniUtils.indexSet((PtNDArray) values[layer], (PtNDArray) v,
                new long[] {0, 0, start, 0}, new long[] {shape[0], shape[1], start + t, shape[3]}, one);
    }

    /** Keys of positions [0, end), transposed: [B,K,D,end]. */
    NDArray keysTransposed(int layer, int end) {
        return JniUtils.slice((PtNDArray) keys[layer], 3, 0, end, 1);
    }

    /** Values of positions [0, end): [B,K,end,D]. */
    NDArray values(int layer, int end) {
        return JniUtils.slice((PtNDArray) values[layer], 2, 0, end, 1);
    }

    /** Keeps only the given batch rows (finished rows stop costing compute). */
    public void select(NDArray rows) {
        for (int i = 0; i < keys.length; i++) {
            NDArray r = rows.toDevice(keys[i].getDevice(), false);
            NDArray k = keys[i].get(r), v = values[i].get(r);
            keys[i].close();
            values[i].close();
            keys[i] = k;
            values[i] = v;
        }
    }
}
