package klrl.util;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.DataType;

/** Engine start-up shared by every command: offline, PyTorch, a chosen device and dtype. */
public final class Runtime {
    private Runtime() {}

    static {
        // Never reach for the network: libtorch comes from the jar, models from disk.
        System.setProperty("ai.djl.offline", "true");
        System.setProperty("DJL_DEFAULT_ENGINE", "PyTorch");
        System.setProperty("ai.djl.default_engine", "PyTorch");
    }

    public static Engine engine() {
        return Engine.getEngine("PyTorch");
    }

    /**
     * Turns autograd recording off for this thread. libtorch starts with it on, so without this every
     * forward outside a recording scope (rollouts, reference and eval passes) would build a graph
     * over the trainable parameters; {@link Grad} (and DJL's collector) turn it on inside their scope
     * and restore it. The mode belongs to the calling thread: every worker thread calls this first.
     */
    public static void noGradOutsideCollectors() {
        engine(); // loads libtorch first
        ai.djl.pytorch.jni.JniUtils.setGradMode(false);
    }

    /**
     * Whether fp32 matmuls on CUDA run on TF32 tensor cores. DJL 0.33's JNI has no setter for
     * torch.backends.cuda.matmul.allow_tf32; libtorch 2.5 reads this variable instead, once, at its
     * first cuBLAS call, so it is a process-start setting like the allocator's.
     */
    public static boolean tf32() {
        return tf32(System.getenv(TF32_VARIABLE));
    }

    static final String TF32_VARIABLE = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE";

    /** libtorch's rule (c10::utils::check_env): exactly "1" is on, "0" off; it ignores anything else. */
    static boolean tf32(String value) {
        if (value == null || value.equals("0")) {
            return false;
        }
        if (value.equals("1")) {
            return true;
        }
        throw new UserError(TF32_VARIABLE + " must be 0 or 1 (libtorch ignores any other value), got '" + value + "'");
    }

    /**
     * Which kernels MKL (inside libtorch_cpu) runs fp32 matmuls with: by CPU features when
     * scripts/mkl-on-amd.c is preloaded (scripts/env.sh does it on AMD CPUs with AVX-512), else MKL's
     * own vendor rule, which gives AMD CPUs its generic AVX2 path. Read from this process's mappings.
     */
    public static String mklKernels() {
        try {
            boolean fix = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/self/maps")).contains("libmkl-on-amd.so");
            return fix ? "by CPU features (scripts/mkl-on-amd.c preloaded)" : "MKL's vendor default";
        } catch (java.io.IOException | RuntimeException e) {
            return "unknown (no /proc/self/maps)";
        }
    }

    /** "cpu", "cuda", "cuda:N" or "auto" (a GPU when one is visible). */
    public static Device device(String spec) {
        return device(spec, "--device");
    }

    /** As {@link #device(String)}; an error names {@code setting} (e.g. rollout.devices), where the spec came from. */
    public static Device device(String spec, String setting) {
        Engine e = engine();
        return switch (spec) {
            case "auto" -> e.getGpuCount() > 0 ? Device.gpu() : Device.cpu();
            case "cpu" -> Device.cpu();
            case "cuda", "gpu" -> requireGpu(e, 0, setting);
            default -> {
                if (spec.matches("cuda:\\d{1,4}")) {
                    yield requireGpu(e, Integer.parseInt(spec.substring(5)), setting);
                }
                throw new UserError(setting + " must be cpu, cuda, cuda:N or auto, got '" + spec + "'");
            }
        };
    }

    private static Device requireGpu(Engine e, int id, String setting) {
        if (e.getGpuCount() <= id) {
            throw new UserError(setting + " cuda:" + id + " requested but " + e.getGpuCount()
                    + " GPU(s) are visible (is this the CUDA build, run with --gpus all?)");
        }
        return Device.gpu(id);
    }

    public static DataType dtype(String spec) {
        return switch (spec) {
            case "float32", "fp32" -> DataType.FLOAT32;
            case "float16", "fp16" -> DataType.FLOAT16;
            case "bfloat16", "bf16" -> throw new UserError("--dtype bfloat16 is not available: DJL 0.33's PyTorch binding"
                    + " has no bfloat16 (it aborts the JVM); use float16 or float32");
            default -> throw new UserError("--dtype must be float32 or float16, got '" + spec + "'");
        };
    }
}
