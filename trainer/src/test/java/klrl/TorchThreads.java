package klrl;

import ai.djl.pytorch.jni.JniUtils;
import java.util.concurrent.Callable;

/**
 * Runs a body with the calling thread's libtorch intra-op threads set by hand. Kernels split their
 * sums by thread count, so two runs compared to rounding must compute on the same count: a run whose
 * trainer shares the cores with other computing threads (a rollout copy, pipeline stages, replicas)
 * is compared with one given the same count, whatever the machine's cores.
 */
public final class TorchThreads {
    private TorchThreads() {}

    /** The count the calling thread computes with when nothing is set. */
    public static int current() {
        klrl.util.Runtime.engine(); // libtorch loaded before its thread count is read
        return JniUtils.getNumThreads();
    }

    public static <T> T with(int threads, Callable<T> body) throws Exception {
        int was = current();
        String property = System.getProperty("ai.djl.pytorch.num_threads");
        System.setProperty("ai.djl.pytorch.num_threads", Integer.toString(threads)); // set by hand: no core sharing
        JniUtils.setNumThreads(threads);
        try {
            return body.call();
        } finally {
            JniUtils.setNumThreads(was);
            if (property == null) {
                System.clearProperty("ai.djl.pytorch.num_threads");
            } else {
                System.setProperty("ai.djl.pytorch.num_threads", property);
            }
        }
    }
}
