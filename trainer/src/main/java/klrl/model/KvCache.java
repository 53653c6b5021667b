package klrl.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.ndarray.types.Shape;

/**
 * Preallocated per-layer key/value tensors [B,K,capacity,D], written in place. Nothing is copied or
 * reallocated per token; closing the manager that owns it frees it.
 */
public final class KvCache {
    private final NDArray[] keys, values;
    public final int capacity;

    public KvCache(Decoder model, NDManager manager, int batch, int capacity) {
        ModelConfig c = model.config;
        this.capacity = capacity;
        keys = new NDArray[c.numLayers()];
        values = new NDArray[c.numLayers()];
        Shape shape = new Shape(batch, c.numKvHeads(), capacity, c.headDim());
        for (int i = 0; i < keys.length; i++) {
            ai.djl.Device d = model.placement().layer(i); // each layer's cache beside its weights
            keys[i] = manager.zeros(shape, model.dtype, d);
            values[i] = manager.zeros(shape, model.dtype, d);
        }
    }

    void write(int layer, int start, NDArray k, NDArray v) {
        long t = k.getShape().get(2);
        if (start + t > capacity) {
            throw new IllegalStateException("KV cache overflow: " + (start + t) + " > capacity " + capacity);
        }
        // direct JNI slice calls: NDIndex strings are parsed in Java on every call, per layer and token
        long[] shape = keys[layer].getShape().getShape();
        long[] from = {0, 0, start, 0}, to = {shape[0], shape[1], start + t, shape[3]}, step = {1, 1, 1, 1};
        JniUtils.indexSet((PtNDArray) keys[layer], (PtNDArray) k, from, to, step);
        JniUtils.indexSet((PtNDArray) values[layer], (PtNDArray) v, from, to, step);
    }

    NDArray keys(int layer, int end) {
        return JniUtils.slice((PtNDArray) keys[layer], 2, 0, end, 1);
    }

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
