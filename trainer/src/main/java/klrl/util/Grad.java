package klrl.util;

import ai.djl.ndarray.NDArray;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;

/**
 * Records autograd in the calling thread until closed, then restores what was there. DJL's
 * GradientCollector does the same but allows one collector in the whole process (a static flag), so
 * data-parallel replicas, one thread each, could not differentiate at the same time; libtorch's grad
 * mode is per thread, and concurrent backward passes over disjoint graphs are supported.
 */
public final class Grad implements AutoCloseable {
    private final boolean was;

    private Grad() {
        was = JniUtils.isGradMode();
        JniUtils.setGradMode(true);
    }

    /** Starts recording in this thread. */
    public static Grad record() {
        Runtime.engine(); // libtorch must be loaded before its grad mode is touched
        return new Grad();
    }

    /** Back-propagates a scalar (seeded with one); gradients accumulate into the leaves' .grad. */
    public void backward(NDArray loss) {
        backward(loss, loss.onesLike());
    }

    /** Back-propagates {@code out} with the upstream gradient {@code grad} (same shape and device). */
    public void backward(NDArray out, NDArray grad) {
        JniUtils.backward((PtNDArray) out, (PtNDArray) grad, false, false);
    }

    @Override
    public void close() {
        JniUtils.setGradMode(was);
    }
}
