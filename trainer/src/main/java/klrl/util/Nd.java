package klrl.util;

import ai.djl.ndarray.NDArray;

/**
 * Scalar arithmetic that is safe under autograd.
 *
 * <p>DJL 0.33's {@code x.mul(Number)} / {@code div(Number)} wrap the number in a scalar tensor that
 * aliases a Java direct buffer and close it right after the op. The op's backward saved that scalar,
 * so once the garbage collector frees the buffer, backward multiplies by whatever memory is there:
 * nondeterministic NaN/huge gradients (reproduced by calling System.gc() before backward). These
 * helpers put the scalar in x's manager instead, so it lives as long as the activations do.
 */
public final class Nd {
    private Nd() {}

    /**
     * A 0-dim tensor of x's dtype, owned by x's manager, in memory libtorch allocated: an array made from
     * Java data on CPU aliases a direct buffer, which closing the handle (as the decoder's per-layer
     * scopes do) hands to the garbage collector while autograd may still read it.
     */
    public static NDArray scalar(NDArray x, double v) {
        return x.getManager().full(new ai.djl.ndarray.types.Shape(), (float) v, x.getDataType());
    }

    public static NDArray mul(NDArray x, double v) {
        return x.mul(scalar(x, v));
    }

    public static NDArray div(NDArray x, double v) {
        return x.div(scalar(x, v));
    }

    /**
     * Runs f in its own NDScope and closes everything it made except its result, which joins the
     * caller's scope: intermediates go when f returns, as refcounting frees them in PyTorch, not when
     * the caller's scope or manager closes. Autograd keeps what backward needs by its own references.
     */
    public static NDArray scoped(java.util.function.Supplier<NDArray> f) {
        NDArray out;
        try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
            out = f.get();
            ai.djl.ndarray.NDScope.unregister(out);
        }
        ai.djl.ndarray.NDScope.register(out);
        return out;
    }
}
