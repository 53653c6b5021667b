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
    /** The innermost recording of each thread, which backward passes registered with {@link #after} belong to. */
    private static final ThreadLocal<Grad> CURRENT = new ThreadLocal<>();
    private final boolean was;
    private final Grad outer;
    /** Backward passes to run after this recording's next backward, last registered first. */
    private final java.util.ArrayDeque<Runnable> after = new java.util.ArrayDeque<>();

    private Grad(boolean on) {
        was = JniUtils.isGradMode();
        JniUtils.setGradMode(on);
        outer = CURRENT.get();
        CURRENT.set(on ? this : null);
    }

    /** Starts recording in this thread. */
    public static Grad record() {
        Runtime.engine(); // libtorch must be loaded before its grad mode is touched
        return new Grad(true);
    }

    /**
     * Stops recording in this thread until closed (a computation inside a recording that must keep no
     * graph, such as the chunked head's forward).
     */
    public static Grad paused() {
        Runtime.engine();
        return new Grad(false);
    }

    /** Whether this thread records into a {@link Grad} that can run backward passes registered with {@link #after}. */
    public static boolean recording() {
        return CURRENT.get() != null && JniUtils.isGradMode();
    }

    /**
     * Registers a backward pass to run right after the current recording's next {@link #backward}: a
     * computation whose forward kept no graph (the chunked output head) recomputes its part then, from
     * the gradients its leaves received. Registered passes run last first, as autograd would reach them.
     */
    public static void after(Runnable backward) {
        Grad g = CURRENT.get();
        if (g == null || !JniUtils.isGradMode()) {
            throw new IllegalStateException("a deferred backward needs a recording klrl.util.Grad in this thread");
        }
        g.after.push(backward);
    }

    /** Back-propagates a scalar (seeded with one); gradients accumulate into the leaves' .grad. */
    public void backward(NDArray loss) {
        backward(loss, loss.onesLike());
    }

    /** Back-propagates {@code out} with the upstream gradient {@code grad} (same shape and device). */
    public void backward(NDArray out, NDArray grad) {
        JniUtils.backward((PtNDArray) out, (PtNDArray) grad, false, false);
        while (!after.isEmpty()) {
            after.pop().run();
        }
    }

    @Override
    public void close() {
        JniUtils.setGradMode(was);
        if (outer != null) {
            CURRENT.set(outer);
        } else {
            CURRENT.remove();
        }
    }
}
