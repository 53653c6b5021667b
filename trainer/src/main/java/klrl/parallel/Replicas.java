package klrl.parallel;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.pytorch.jni.JniUtils;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.BiFunction;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.LongConsumer;
import java.util.function.ToIntFunction;
import klrl.config.TrainConfig;
import klrl.model.ModelConfig;
import klrl.model.Placement;
import klrl.model.Tokenizer;
import klrl.plan.MemoryPlan;
import klrl.rollout.RolloutEngine;
import klrl.rollout.Sample;
import klrl.rollout.SamplingParams;
import klrl.train.Evaluator;
import klrl.train.Policies;

/**
 * The model replicas of a run, one per device, each with its own thread (train.parallel: data).
 * Replica 0 is the master: the optimizer updates it and checkpoints save it. The others are copies
 * on their own devices that take a share of every rollout (whole prompt groups), reference pass and
 * update (micro-batches); after a mini-batch their gradients are summed onto the master's in replica
 * order, and after the optimizer step the master's trainable tensors are copied back to them. DJL has
 * no collective operations: both are device-to-device copies, timed as time_grad_reduce and
 * time_param_sync. With one replica (one device, or layers placed over several) all work runs in the
 * caller's thread, as it did before replicas existed.
 */
public final class Replicas implements AutoCloseable {
    /** One replica: its networks, its device's root manager, its rollout engine. */
    public record Replica(int index, Policies nets, NDManager root, RolloutEngine engine) {}

    private final List<Replica> all;
    /** One single-thread executor per replica; empty with one replica. */
    private final List<ExecutorService> threads = new ArrayList<>();
    private final ToIntFunction<Replica> kvRows;
    private double reduceSeconds, syncSeconds;
    /** Whether {@link #close} also closes the master's root manager (made by {@link #open} and {@link #generators}). */
    private boolean ownsRoot;
    /** The caller's libtorch thread count before {@link #generators} shared the cores out, restored by {@link #close} (0: unchanged). */
    private int callerThreads;

    private Replicas(List<Replica> all, ToIntFunction<Replica> kvRows) {
        this.all = all;
        this.kvRows = kvRows;
    }

    /**
     * The run's networks on the devices of model.device: one replica (one device, or the decoder's
     * layers placed over several), or one per device (train.parallel: data). Checks the memory plan
     * first and says which layout it chose. The master's root manager is {@code master().root()}.
     */
    public static Replicas open(TrainConfig cfg, java.nio.file.Path modelDir, Tokenizer tok, Consumer<String> log) throws IOException {
        DataType dtype = klrl.util.Runtime.dtype(cfg.model().dtype());
        List<Device> devices = Placement.parseDevices(cfg.model().device(), klrl.util.Runtime::device);
        ModelConfig mc = ModelConfig.load(modelDir);
        boolean gpu = devices.get(0).isGpu();
        long deviceBytes = gpu ? ai.djl.util.cuda.CudaUtils.getGpuMemory(devices.get(0)).getMax() : MemoryPlan.hostAvailableBytes();
        boolean data = dataParallel(cfg, mc, devices, deviceBytes, log);
        // This trainer's own tensors (logits, losses, advantages, sampling) live with the master's head.
        Placement placement = data ? Placement.single(devices.get(0), mc.numLayers()) : Placement.balanced(devices, mc);
        MemoryPlan.preflight(cfg, mc, devices, data, deviceBytes, java.lang.Runtime.getRuntime().maxMemory());
        NDManager root = NDManager.newBaseManager(placement.output(), "PyTorch");
        try {
            klrl.util.Runtime.noGradOutsideCollectors();
            logDevices(placement, dtype, log);
            log.accept(klrl.model.Attention.describe(cfg.model().attention(), MemoryPlan.sequence(cfg)));
            Policies nets = Policies.load(cfg, modelDir, root, dtype, placement);
            Function<Policies, RolloutEngine> engines = n -> Evaluator.rolloutEngine(n.policy, tok, cfg);
            ToIntFunction<Replica> kvRows = r -> MemoryPlan.kvRows(cfg, r.nets().policy);
            int perDevice = gpu ? 0 : Math.max(1, JniUtils.getNumThreads() / devices.size());
            Replicas made = data ? data(nets, root, devices, engines, kvRows, perDevice)
                    : new Replicas(List.of(new Replica(0, nets, root, engines.apply(nets))), kvRows);
            made.ownsRoot = true;
            boolean placed = !data && placement.stages() > 1;
            if (placed && cfg.train().pipeline()) {
                made.pipeline = new Pipeline(placement.stages(), perDevice);
                made.pipelinedUpdate = !cfg.train().gradVar() && !(cfg.model().lora().rank() > 0 && cfg.model().lora().dropout() > 0);
                log.accept("pipelined: a thread per device, micro-batches flowing through the layer groups; the update "
                        + (made.pipelinedUpdate ? "one-forward-one-backward" : "stage after stage ("
                        + (cfg.train().gradVar() ? "train.grad_var reads each micro-batch's whole gradient" : "LoRA dropout draws from one random stream") + ")"));
            }
            if (placed && cfg.rollout().engine().equals("local")) {
                log.accept("generation: local decoding over the placed layers runs one device at a time; SGLang or vLLM servers"
                        + " generate for full fine-tuning (rollout.engine)");
            }
            return made;
        } catch (IOException | RuntimeException | Error e) {
            root.close();
            throw e;
        }
    }

    /**
     * Copies of the training master's policy on the devices of rollout.devices, one per device, each
     * working in its own thread: they generate (locally) or recompute the servers' behaviour log-probs,
     * while the training replicas may be updating. {@link #copyFrom} gives them the master's weights.
     * On CPU "devices" the cores are shared out between training and generating threads (the caller's
     * thread, which trains on one device, gets its share too).
     */
    public static Replicas generators(Replicas training, TrainConfig cfg, Tokenizer tok) {
        List<Device> devices = Placement.parseDevices(cfg.rollout().devices(),
                d -> klrl.util.Runtime.device(d, "rollout.devices"));
        boolean gpu = devices.get(0).isGpu();
        int share = gpu ? 0 : Math.max(1, JniUtils.getNumThreads() / (devices.size() + training.size()));
        List<Replica> reps = new ArrayList<>();
        Replicas r = new Replicas(reps, x -> MemoryPlan.kvRows(cfg, x.nets().policy));
        r.ownsRoot = true;
        if (!gpu && training.threads.isEmpty()) {
            r.callerThreads = JniUtils.getNumThreads();
            JniUtils.setNumThreads(share);
        }
        try {
            for (int d = 0; d < devices.size(); d++) {
                NDManager m = NDManager.newBaseManager(devices.get(d), "PyTorch");
                Policies nets;
                try {
                    nets = training.master().nets().generator(m);
                } catch (RuntimeException | Error e) {
                    m.close();
                    throw e;
                }
                reps.add(new Replica(d, nets, m, Evaluator.rolloutEngine(nets.policy, tok, cfg)));
                r.threads.add(worker("rollout-" + d));
            }
            r.each(rep -> threadSetUp(share));
        } catch (RuntimeException | Error e) {
            r.close();
            throw e;
        }
        return r;
    }

    /** A single-thread executor whose daemon thread has this name. */
    public static ExecutorService worker(String name) {
        return Executors.newSingleThreadExecutor(task -> {
            Thread t = new Thread(task, name);
            t.setDaemon(true);
            return t;
        });
    }

    /** A worker thread's first task: grad mode off, and its libtorch thread count (0: the default). */
    static Void threadSetUp(int torchThreads) {
        klrl.util.Runtime.noGradOutsideCollectors(); // grad mode belongs to each thread
        if (torchThreads > 0) {
            JniUtils.getNumThreads(); // a fresh thread adopts the process value at its first parallel op: read it first
            JniUtils.setNumThreads(torchThreads);
            klrl.util.CpuShare.thread(torchThreads); // its share of them when other trainers run on this machine
        }
        return null;
    }

    /**
     * train.parallel for the devices of model.device: data parallelism ("data", or "auto" when the
     * memory plan says a replica fits one GPU; on CPU devices, with the host's memory not bounded here,
     * it does), else layer placement. Says which.
     */
    private static boolean dataParallel(TrainConfig cfg, ModelConfig mc, List<Device> devices, long deviceBytes,
                                        Consumer<String> log) {
        if (devices.size() == 1) {
            return false;
        }
        String mode = cfg.train().parallel();
        boolean gpu = devices.get(0).isGpu();
        MemoryPlan.Plan replica = MemoryPlan.plan(cfg, mc, devices.size(), gpu ? deviceBytes / MemoryPlan.GB : 1e12, true);
        boolean data = MemoryPlan.dataParallel(cfg, replica);
        String why = mode.equals("auto") ? String.format(java.util.Locale.ROOT, " (train.parallel: auto; a replica needs about"
                + " %.1f GiB of %.1f GiB per device)", replica.totalGb(), deviceBytes / MemoryPlan.GB) : " (train.parallel: " + mode + ")";
        if (!data && cfg.model().critic().equals("separate")) {
            throw new klrl.util.UserError("config: model.critic: separate needs a replica per device (train.parallel: data);"
                    + " with layers over " + devices + " use model.critic: head");
        }
        log.accept((data ? "data parallel: a replica on each of " : "layer placement: the decoder's layers over ") + devices + why);
        return data;
    }

    private static void logDevices(Placement placement, DataType dtype, Consumer<String> log) {
        if (placement.stages() > 1) {
            log.accept("layers per device " + placement.devices() + ": " + java.util.Arrays.toString(placement.layerCounts()));
        }
        if (!placement.output().isGpu()) {
            log.accept("MKL kernels: " + klrl.util.Runtime.mklKernels());
        } else if (dtype == DataType.FLOAT32) {
            log.accept(klrl.util.Runtime.tf32() ? "fp32 matmuls on TF32 tensor cores (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1)"
                    : "fp32 matmuls in full IEEE fp32 (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 at launch selects TF32)");
        }
    }

    /** The placement of the master's policy (its devices, its output device). */
    public Placement placement() {
        return master().nets().policy.placement();
    }

    /**
     * The master on {@code devices.get(0)} (already loaded) and a copy on each further device.
     *
     * @param torchThreads libtorch intra-op threads per replica thread (0: libtorch's default); on CPU
     *                     "devices" the cores are shared out, on GPUs the default is fine
     */
    private static Replicas data(Policies master, NDManager root, List<Device> devices, Function<Policies, RolloutEngine> engines,
                         ToIntFunction<Replica> kvRows, int torchThreads) {
        List<Replica> reps = new ArrayList<>();
        reps.add(new Replica(0, master, root, engines.apply(master)));
        List<NDManager> made = new ArrayList<>();
        try {
            for (int d = 1; d < devices.size(); d++) {
                NDManager m = NDManager.newBaseManager(devices.get(d), "PyTorch");
                made.add(m);
                Policies nets = master.replica(m);
                reps.add(new Replica(d, nets, m, engines.apply(nets)));
            }
        } catch (RuntimeException | Error e) {
            made.forEach(NDManager::close);
            throw e;
        }
        Replicas r = new Replicas(List.copyOf(reps), kvRows);
        for (Replica rep : reps) {
            r.threads.add(worker("replica-" + rep.index()));
        }
        r.each(rep -> threadSetUp(torchThreads));
        return r;
    }

    public int size() {
        return all.size();
    }

    public Replica master() {
        return all.get(0);
    }

    public List<Replica> all() {
        return all;
    }

    /** Runs {@code task} on every replica (in its thread) and returns the results in replica order. */
    <T> List<T> each(Function<Replica, T> task) {
        return first(all.size(), task);
    }

    /** Runs {@code task} on replicas 0 … count−1 at once and returns their results in replica order. */
    public <T> List<T> first(int count, Function<Replica, T> task) {
        if (threads.isEmpty()) {
            return java.util.Collections.singletonList(task.apply(all.get(0)));
        }
        List<Future<T>> fs = new ArrayList<>();
        for (Replica r : all.subList(0, count)) {
            fs.add(threads.get(r.index()).submit(() -> {
                klrl.util.CpuShare.follow(); // trainers started or ended on this machine: this thread's share of the cores
                return task.apply(r);
            }));
        }
        List<T> out = new ArrayList<>();
        Throwable first = null;
        for (Future<T> f : fs) { // every task has ended before anything is thrown
            try {
                out.add(f.get());
            } catch (ExecutionException e) {
                first = first == null ? e.getCause() : first;
                out.add(null);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                first = first == null ? e : first;
            }
        }
        rethrow(first);
        return out;
    }

    /** Throws {@code first} as it is when unchecked, wrapped otherwise; nothing when null. */
    static void rethrow(Throwable first) {
        if (first instanceof RuntimeException re) {
            throw re;
        } else if (first instanceof Error er) {
            throw er;
        } else if (first != null) {
            throw new IllegalStateException(first);
        }
    }

    /**
     * Tasks 0 … n−1 dealt round-robin: task i runs on replica i mod size, each replica taking its tasks
     * in increasing order; results come back by task index.
     */
    public <T> List<T> deal(int n, BiFunction<Replica, Integer, T> task) {
        List<List<T>> per = each(r -> {
            List<T> mine = new ArrayList<>();
            for (int i = r.index(); i < n; i += all.size()) {
                mine.add(task.apply(r, i));
            }
            return mine;
        });
        List<T> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(per.get(i % all.size()).get(i / all.size()));
        }
        return out;
    }

    /**
     * n samples per prompt: each replica takes a contiguous share of whole prompt groups, padded as
     * the whole request is, with every sample's random stream set by its global index: the samples
     * equal one device's.
     */
    public List<Sample> generate(List<long[]> prompts, SamplingParams p, LongConsumer onFinished) {
        int n = prompts.size(), k = all.size(), padTo = RolloutEngine.longest(prompts);
        List<List<Sample>> parts = each(r -> {
            int from = (int) ((long) r.index() * n / k), to = (int) ((long) (r.index() + 1) * n / k);
            r.nets().policy.setTraining(false);
            r.engine().withMaxRows(kvRows.applyAsInt(r)).onFinished(onFinished);
            return from == to ? List.<Sample>of() : r.engine().generate(prompts.subList(from, to), from, padTo, p, r.root());
        });
        List<Sample> out = new ArrayList<>();
        parts.forEach(out::addAll);
        return out;
    }

    private static final NDIndex ALL = new NDIndex(":");

    /**
     * Adds the gradients of replicas 1 … count−1 onto the master's, in replica order, and zeroes theirs.
     * Called after every round of micro-batches (micro-batch k on replica k mod size): the master's
     * backward adds its micro-batch onto the running sum, then the others' follow in order, so the
     * sum is formed in exactly the order one device forms it, and equals it bit for bit.
     */
    public void reduceGradients(int count) {
        long t0 = System.nanoTime();
        var master = all.get(0).nets().trainable;
        for (int d = 1; d < count; d++) {
            var rep = all.get(d).nets().trainable;
            for (var e : master.entrySet()) {
                try (NDScope scope = new NDScope()) {
                    NDArray g = rep.get(e.getKey()).getGradient();
                    e.getValue().getGradient().addi(g.toDevice(e.getValue().getDevice(), false));
                    g.set(ALL, 0); // a fill, so a NaN does not survive into the next micro-batch
                }
            }
        }
        reduceSeconds += (System.nanoTime() - t0) / 1e9;
    }

    /** Copies the master's trainable tensors into every replica (after each optimizer step and a restore). */
    public void broadcast() {
        long t0 = System.nanoTime();
        var master = all.get(0).nets().trainable;
        for (int d = 1; d < all.size(); d++) {
            var rep = all.get(d).nets().trainable;
            for (var e : master.entrySet()) {
                copyInto(e.getValue(), rep.get(e.getKey()));
            }
        }
        syncSeconds += (System.nanoTime() - t0) / 1e9;
    }

    /**
     * Copies {@code training}'s master's trainable tensors into these (generators): every tensor they
     * name. Run between rollouts only: nothing may be generating.
     */
    public void copyFrom(Replicas training) {
        long t0 = System.nanoTime();
        var master = training.master().nets().trainable;
        for (Replica rep : all) {
            for (var e : rep.nets().trainable.entrySet()) {
                copyInto(master.get(e.getKey()), e.getValue());
            }
        }
        syncSeconds += (System.nanoTime() - t0) / 1e9;
    }

    /** {@code dst} ← {@code src}, across devices if need be, keeping dst's memory layout. */
    private static void copyInto(NDArray src, NDArray dst) {
        if (src.getDevice().equals(dst.getDevice())) {
            dst.set(ALL, src); // an indexed copy keeps dst's memory layout
        } else {
            try (NDArray c = src.toDevice(dst.getDevice(), false)) {
                dst.set(ALL, c);
            }
        }
    }

    /** The largest absolute difference between a replica's trainable tensor and the master's (0 when in sync). */
    public double maxDifference() {
        double max = 0;
        var master = all.get(0).nets().trainable;
        for (int d = 1; d < all.size(); d++) {
            var rep = all.get(d).nets().trainable;
            for (var e : master.entrySet()) {
                try (NDScope scope = new NDScope()) {
                    NDArray a = rep.get(e.getKey()).toDevice(e.getValue().getDevice(), false);
                    max = Math.max(max, a.sub(e.getValue()).abs().max().toType(ai.djl.ndarray.types.DataType.FLOAT32, false).getFloat());
                }
            }
        }
        return max;
    }

    /**
     * Since the last call: with several replicas, the seconds spent reducing gradients and copying
     * parameters (time_grad_reduce, time_param_sync); with a pipeline, how busy its stages were
     * (pipeline_busy*). Then resets.
     */
    public Map<String, Double> takeTimes() {
        Map<String, Double> t = new java.util.LinkedHashMap<>();
        if (all.size() > 1) {
            t.put("time_grad_reduce", reduceSeconds);
            t.put("time_param_sync", syncSeconds);
        }
        if (pipeline != null) {
            t.putAll(pipeline.takeBusy());
        }
        reduceSeconds = 0;
        syncSeconds = 0;
        return t;
    }

    /** Layer placement's stages as a pipeline (train.pipeline), or null: one device, data parallel, or stage after stage. */
    private Pipeline pipeline;
    /** Whether the update runs through {@link #pipeline} too (forward-only passes always do). */
    private boolean pipelinedUpdate;

    public Pipeline pipeline() {
        return pipeline;
    }

    /** The pipeline for the update, or null when it runs stage after stage. */
    public Pipeline updatePipeline() {
        return pipelinedUpdate ? pipeline : null;
    }

    /** Arrays alive in every replica's root manager (the leak watch). */
    public int liveArrays() {
        return all.stream().mapToInt(r -> r.root().getManagedArrays().size()).sum();
    }

    /**
     * Stops a worker: its queued tasks are dropped, a running one is interrupted (generation stops at
     * its next token) and waited for, so nothing it reads is freed under it. False if it is still
     * running after the wait (a task stuck in native code): then its memory must be left alone.
     */
    public static boolean stop(ExecutorService worker) {
        worker.shutdownNow();
        try {
            return worker.awaitTermination(10, java.util.concurrent.TimeUnit.MINUTES);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /** False once {@link #close} found a worker still running after its wait (its tensors were then left alone). */
    private boolean workersStopped = true;

    public boolean workersStopped() {
        return workersStopped;
    }

    @Override
    public void close() {
        boolean stopped = pipeline == null || pipeline.stop();
        for (ExecutorService t : threads) {
            stopped &= stop(t);
        }
        workersStopped = stopped;
        if (!stopped) {
            return; // a worker still runs on these tensors: left to the process's exit rather than freed under it
        }
        for (int d = 1; d < all.size(); d++) {
            all.get(d).root().close();
        }
        if (ownsRoot && !all.isEmpty()) {
            master().root().close();
        }
        if (callerThreads > 0) {
            JniUtils.setNumThreads(callerThreads);
        }
    }
}
