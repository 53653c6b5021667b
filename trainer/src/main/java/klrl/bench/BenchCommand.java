package klrl.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import klrl.config.ConfigLoader;
import klrl.model.Decoder;
import klrl.model.KvCache;
import klrl.model.TinyModel;
import klrl.optim.AdamW;
import klrl.rewards.Verifier;
import klrl.rollout.RolloutEngine;
import klrl.rollout.SamplingParams;
import klrl.train.PolicyForward;
import klrl.train.SequenceBatch;
import klrl.train.Trainer;
import klrl.util.Json;
import klrl.util.Runtime;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Benchmarks as JSON (medians after warm-up) on the standard benchmark model: Qwen2 shape, hidden 256,
 * 4 layers, 8/2 heads (head_dim 32), intermediate 704, vocab 8192, untied, fp32 (≈ 7.0 M parameters).
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Speed benchmarks (JSON): rollout decode, policy update, verifier, one RL step of the CPU default, and it data parallel on two CPU devices.")
public final class BenchCommand implements Callable<Integer> {
    @Option(names = "--only", split = ",", description = "subset of: rollout, update, verifier, rl-step, rl-step-dp, rl-step-overlap (default: all of these);"
            + " update-varlen (minutes: a 55 M-parameter model on MATH-like lengths) and attention-long (one row of 64–16k tokens,"
            + " eager vs sdpa attention) and layers-pipeline (layers over 2 and 4 CPU devices: sequential vs pipelined) and head-long"
            + " (minutes: one response of 1k–16k tokens through a 151,936-token vocabulary, the output head whole vs in chunks) and data-load"
            + " (minutes: DAPO-Math-17k-shaped sets of 10k, 100k and 1.79 M rows, JSONL and parquet, trained to their first step) run only"
            + " when named")
    List<String> only;
    @Option(names = "--repeats", defaultValue = "5") int repeats;
    @Option(names = "--attention-mode", hidden = true, description = "attention-long: measure this mode only, in this process")
    String attentionMode;
    @Option(names = "--head-tokens", hidden = true, split = ",", description = "head-long: only these response lengths (default: 1024–16384)")
    int[] headTokens;
    @Option(names = "--head-model", hidden = true, description = "head-long: the model folder a measuring process loads")
    Path headModel;
    @Option(names = "--head-row", hidden = true, description = "head-long: measure TOKENS:CHUNK only, in this process")
    String headRow;
    @Option(names = "--device", defaultValue = "cpu") String device;
    @Option(names = "--data-rows", split = ",", description = "data-load: only sets of these sizes (default: 10000,100000,1791700)")
    int[] dataRows;
    @Option(names = "--data-parquet", description = "data-load: also this parquet file (in DAPO-Math-17k's layout, say, written by"
            + " another writer), and the resume on it")
    Path dataParquet;

    static final TinyModel.Spec BENCH = new TinyModel.Spec("qwen2", 256, 4, 8, 2, 704, 1, "F32", Long.MAX_VALUE, false, 0.02, 8192);

    /** A measurement in a process of its own (attention-long's modes, head-long's rows) starts here, without the CLI around it. */
    public static void main(String[] args) {
        klrl.util.Processes.endWithStarter(System.getenv());
        System.setProperty("ai.djl.offline", "true");
        System.exit(new picocli.CommandLine(new BenchCommand()).execute(args));
    }

    boolean wants(String what) {
        return only == null || only.contains(what);
    }

    @Override
    public Integer call() throws Exception {
        ObjectNode out = Json.MAPPER.createObjectNode();
        if (headRow != null) { // nothing else in this process: its peak memory is the row's
            String[] tc = headRow.split(":");
            if (headModel == null || tc.length != 2 || !tc[0].matches("[0-9]+") || !tc[1].matches("[0-9]+") || Integer.parseInt(tc[0]) < 1) {
                throw new klrl.util.UserError("--head-row: expected TOKENS:CHUNK (TOKENS ≥ 1, CHUNK ≥ 0) with --head-model, got '" + headRow + "'");
            }
            out.set("head_long", HeadBench.row(headModel, Integer.parseInt(tc[0]), Integer.parseInt(tc[1]), device, repeats));
            System.out.println(Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(out));
            return 0;
        }
        if (headTokens != null && Arrays.stream(headTokens).anyMatch(t -> t < 1)) {
            throw new klrl.util.UserError("--head-tokens: expected response lengths of at least 1 token, got " + Arrays.toString(headTokens));
        }
        ObjectNode env = out.putObject("environment");
        env.put("cores", java.lang.Runtime.getRuntime().availableProcessors());
        env.put("torch_threads", System.getProperty("ai.djl.pytorch.num_threads", "default"));
        env.put("omp_num_threads", String.valueOf(System.getenv("OMP_NUM_THREADS")));
        env.put("allocator", allocator());
        env.put("mkl_kernels", klrl.util.Runtime.mklKernels());
        env.put("jvm_options", String.join(" ", java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()));
        env.put("device", device);
        Path dir = Files.createTempDirectory("klrl-bench");
        TinyModel.write(dir, BENCH);
        try (NDManager root = NDManager.newBaseManager(Runtime.device(device), "PyTorch");
             Decoder model = Decoder.load(dir, root, DataType.FLOAT32)) {
            Runtime.noGradOutsideCollectors();
            env.put("model_parameters", model.config.parameterCount());
            // shared machines drift by up to 2x between runs: these two numbers, taken in the same run,
            // say how fast this machine was while the benchmarks ran
            calibrate(root, env.putObject("machine_at_start"));
            if (wants("rollout")) {
                rollout(model, root, out.putObject("rollout"));
            }
            if (wants("update")) {
                update(model, root, out.putObject("update"));
            }
        }
        if (wants("verifier")) {
            verifier(out.putObject("verifier"));
        }
        if (wants("rl-step")) {
            rlStep(out.putObject("rl_step"));
        }
        if (wants("rl-step-dp")) {
            rlStepDataParallel(out.putObject("rl_step_data_parallel"));
        }
        if (wants("rl-step-overlap")) {
            rlStepOverlap(out.putObject("rl_step_overlap"));
        }
        if (only != null && only.contains("attention-long")) {
            attentionLong(out.putObject("attention_long"));
        }
        if (only != null && only.contains("layers-pipeline")) {
            PipelineBench.run(out.putObject("layers_pipeline"));
        }
        if (only != null && only.contains("head-long")) {
            List<String> jvm = childJvm(BenchCommand.class.getName(), "--only", "head-long", "--device", device, "--repeats",
                    String.valueOf(repeats));
            HeadBench.run(out.putObject("head_long"), jvm, headTokens != null ? headTokens : HeadBench.TOKENS, repeats);
        }
        if (only != null && only.contains("data-load")) {
            if (dataRows != null && Arrays.stream(dataRows).anyMatch(n -> n < 1)) {
                throw new klrl.util.UserError("--data-rows: expected set sizes of at least 1 row, got " + Arrays.toString(dataRows));
            }
            if (dataParquet != null && !Files.isRegularFile(dataParquet)) {
                throw new klrl.util.UserError("--data-parquet: " + dataParquet + ": file not found");
            }
            List<String> jvm = childJvm();
            DataLoadBench.run(out.putObject("data_load"), jvm, dataRows != null ? dataRows : DataLoadBench.ROWS, dataParquet);
        }
        if (only != null && only.contains("update-varlen")) {
            VarlenBench.run(out.putObject("update_varlen"), 64, 8, 8192);
        }
        try (NDManager root = NDManager.newBaseManager(Runtime.device(device), "PyTorch")) {
            calibrate(root, env.putObject("machine_at_end"));
        }
        klrl.checkpoint.Checkpoints.deleteTree(dir);
        System.out.println(Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(out));
        return 0;
    }

    /**
     * fp32 GEMM throughput (1024³, all threads) and matrix-vector streaming bandwidth (a 64 MiB matrix,
     * larger than the last-level cache, as decoding streams its weights); {@link #time} warms MKL up.
     */
    void calibrate(NDManager root, ObjectNode o) {
        try (NDManager m = root.newSubManager()) {
            NDArray a = m.randomUniform(-1, 1, new Shape(1024, 1024)), b = m.randomUniform(-1, 1, new Shape(1024, 1024));
            NDArray w = m.randomUniform(-1, 1, new Shape(8192, 2048)), x = m.randomUniform(-1, 1, new Shape(1, 2048));
            double gemm = time(() -> {
                try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
                    a.matMul(b);
                }
            });
            double gemv = time(() -> {
                try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
                    Decoder.linear(x, w, null);
                }
            });
            o.put("gemm_fp32_gflops", 2.0 * 1024 * 1024 * 1024 / gemm / 1e9);
            o.put("gemv_stream_gb_per_s", 8192.0 * 2048 * 4 / gemv / 1e9);
        }
    }

    static String allocator() {
        String pre = System.getenv("LD_PRELOAD");
        if (pre != null && pre.contains("jemalloc")) {
            return "jemalloc (MALLOC_CONF=" + System.getenv("MALLOC_CONF") + ")";
        }
        if (pre != null && pre.contains("tcmalloc")) {
            return "tcmalloc (gperftools)";
        }
        StringBuilder set = new StringBuilder();
        for (String k : new String[] {"MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"}) {
            if (System.getenv(k) != null) {
                set.append(set.length() == 0 ? "" : ", ").append(k).append('=').append(System.getenv(k));
            }
        }
        return set.length() > 0 ? "glibc (" + set + ")" : "glibc default";
    }

    static double median(List<Double> v) {
        double[] a = v.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        return a.length % 2 == 1 ? a[a.length / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
    }

    /**
     * Warms up for at least two seconds (and one run), then runs f {@code repeats} times; median seconds.
     * On few cores the JIT compiler competes with libtorch's threads for a while after start, so a
     * single warm-up run leaves the first timings slow.
     */
    double time(Runnable f) {
        long until = System.nanoTime() + 2_000_000_000L;
        do {
            f.run();
        } while (System.nanoTime() < until);
        List<Double> t = new ArrayList<>();
        for (int i = 0; i < repeats; i++) {
            long t0 = System.nanoTime();
            f.run();
            t.add((System.nanoTime() - t0) / 1e9);
        }
        return median(t);
    }

    static List<long[]> prompts(int batch, int len, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        List<long[]> p = new ArrayList<>();
        for (int b = 0; b < batch; b++) {
            long[] ids = new long[len];
            for (int i = 0; i < len; i++) {
                ids[i] = r.nextInt(8000);
            }
            p.add(ids);
        }
        return p;
    }

    void rollout(Decoder model, NDManager root, ObjectNode o) {
        RolloutEngine engine = new RolloutEngine(model, List.of(), ids -> "");
        int newTokens = 128;
        for (int batch : new int[] {1, 16, 64}) {
            List<long[]> p = prompts(batch, 32, batch);
            double s = time(() -> engine.generate(p, SamplingParams.greedy(newTokens), root));
            o.put("greedy_tokens_per_s_batch_" + batch, batch * newTokens / s);
        }
        int[] ctxs = {64, 512};
        double[] step = decodeSteps(model, root, 16, ctxs);
        for (int i = 0; i < ctxs.length; i++) {
            o.put("decode_step_ms_batch_16_ctx_" + ctxs[i], 1000 * step[i]);
        }
        o.put("decode_step_ratio_ctx_512_vs_64", step[1] / step[0]);
        // recomputation without a cache: every new token re-runs the whole sequence
        List<long[]> p = prompts(16, 32, 99);
        double[] pair = timePaired(() -> recomputeDecode(model, root, p, newTokens),
                () -> engine.generate(p, SamplingParams.greedy(newTokens), root));
        o.put("recompute_tokens_per_s_batch_16", 16 * newTokens / pair[0]);
        o.put("cache_speedup_vs_recompute", pair[2]);
        o.put("setting", "greedy, 32-token prompts, 128 new tokens (prompt pass included), fp32");
    }

    /**
     * Median seconds of one decode step at batch b for each context length: one cache per length,
     * their steps interleaved, so that the machine's drift (a shared VM's speed can wander within a
     * minute) reaches every length alike and their ratio stays meaningful.
     */
    double[] decodeSteps(Decoder model, NDManager root, int b, int[] ctxs) {
        try (NDManager m = root.newSubManager()) {
            int steps = 24, warm = 4;
            KvCache[] caches = new KvCache[ctxs.length];
            List<List<Double>> t = new ArrayList<>();
            for (int c = 0; c < ctxs.length; c++) {
                int ctx = ctxs[c];
                caches[c] = new KvCache(model, m, b, ctx + steps + 1);
                NDArray valid = m.ones(new Shape(b, ctx), DataType.INT64);
                long[] ids = new long[b * ctx];
                Arrays.fill(ids, 7);
                try (NDManager s = m.newSubManager()) {
                    model.hidden(s.create(ids, new Shape(b, ctx)), valid.cumSum(1).sub(1), model.attentionMask(valid, 0, ctx), caches[c], 0);
                }
                t.add(new ArrayList<>());
            }
            for (int i = 0; i < steps; i++) {
                for (int c = 0; c < ctxs.length; c++) {
                    int cur = ctxs[c] + i;
                    long t0 = System.nanoTime();
                    try (NDManager s = m.newSubManager()) {
                        // no mask: as in the engine's steps for unpadded prompts, every cached key is visible
                        NDArray h = model.hidden(s.create(new long[b], new Shape(b, 1)), s.full(new Shape(b, 1), cur, DataType.INT64),
                                null, caches[c], cur);
                        model.logits(h).argMax(2).toLongArray();
                    }
                    if (i >= warm) {
                        t.get(c).add((System.nanoTime() - t0) / 1e9);
                    }
                }
            }
            return t.stream().mapToDouble(BenchCommand::median).toArray();
        }
    }

    /**
     * Seconds of a and of b (medians) and the median of their per-pair ratio a/b, the runs
     * alternating a, b, a, b… so that drift between them cancels in the ratio.
     */
    double[] timePaired(Runnable a, Runnable b) {
        long until = System.nanoTime() + 2_000_000_000L;
        do {
            a.run();
            b.run();
        } while (System.nanoTime() < until);
        List<Double> ta = new ArrayList<>(), tb = new ArrayList<>(), ratio = new ArrayList<>();
        for (int i = 0; i < repeats; i++) {
            long t0 = System.nanoTime();
            a.run();
            long t1 = System.nanoTime();
            b.run();
            long t2 = System.nanoTime();
            ta.add((t1 - t0) / 1e9);
            tb.add((t2 - t1) / 1e9);
            ratio.add((double) (t1 - t0) / (t2 - t1));
        }
        return new double[] {median(ta), median(tb), median(ratio)};
    }

    static void recomputeDecode(Decoder model, NDManager root, List<long[]> prompts, int newTokens) {
        int b = prompts.size(), len = prompts.get(0).length;
        long[][] seqs = prompts.stream().map(a -> Arrays.copyOf(a, len + newTokens)).toArray(long[][]::new);
        for (int t = len; t < len + newTokens; t++) {
            try (NDManager m = root.newSubManager()) {
                long[] flat = new long[b * t];
                for (int i = 0; i < b; i++) {
                    System.arraycopy(seqs[i], 0, flat, i * t, t);
                }
                NDArray valid = m.ones(new Shape(b, t), DataType.INT64);
                NDArray h = model.hidden(m.create(flat, new Shape(b, t)), valid.cumSum(1).sub(1), model.attentionMask(valid, 0, t), null, 0);
                long[] next = model.logits(h.get(":, " + (t - 1) + ":, :")).argMax(2).toLongArray();
                for (int i = 0; i < b; i++) {
                    seqs[i][t] = next[i];
                }
            }
        }
    }

    /** Forward, GRPO-style loss and backward over 8 × 256 tokens, plus the AdamW step. */
    void update(Decoder model, NDManager root, ObjectNode o) {
        List<long[]> p = prompts(8, 128, 5), r = prompts(8, 128, 6);
        SequenceBatch b = SequenceBatch.of(p, r, 0);
        float[] adv = new float[8 * 128];
        new SplittableRandom(3).doubles(adv.length).forEach(new java.util.function.DoubleConsumer() {
            int i;

            public void accept(double d) {
                adv[i++] = (float) (d - 0.5);
            }
        });
        try (AdamW opt = new AdamW(model.parameters(), Map.of(), new AdamW.Hyper(0.9, 0.999, 1e-8, 0.01), root)) {
            double s = time(() -> {
                try (NDManager m = root.newSubManager();
                     klrl.util.Grad gc = klrl.util.Grad.record()) {
                    PolicyForward.Out out = PolicyForward.run(model, b, m, 1f);
                    NDArray loss = out.logp().mul(b.tensor(m, adv)).mul(b.mask(m)).mean().neg();
                    gc.backward(loss);
                }
                opt.step(1e-5, 1.0);
            });
            o.put("update_step_ms_8x256", s * 1000);
            o.put("setting", "8 sequences × 256 tokens (128 prompt + 128 response), forward + loss + backward + AdamW, fp32");
        }
        for (NDArray prm : model.parameters().values()) {
            prm.setRequiresGradient(false);
        }
    }

    void verifier(ObjectNode o) {
        Verifier v = new Verifier();
        String[][] fast = {{"42", "so the answer is \\boxed{42}"}, {"\\frac{1}{2}", "\\boxed{0.5}"}, {"(1, 2)", "\\boxed{(1,2)}"},
            {"\\frac{\\sqrt{3}}{2}", "\\boxed{\\dfrac{\\sqrt3}{2}}"}, {"-7", "\\boxed{-7}"}, {"3\\pi", "\\boxed{3\\pi}"},
            {"\\{1,2\\}", "\\boxed{\\{2, 1\\}}"}, {"[1, 2)", "\\boxed{[1,2)}"}, {"12", "The answer is 13."}, {"5", "\\boxed{5 \\text{ cm}}"}};
        String[][] slow = {{"(x+1)^2", "\\boxed{x^2+2x+1}"}, {"\\frac{x^2-1}{x-1}", "\\boxed{x+1}"}, {"y=2x+1", "\\boxed{2x-y+1=0}"},
            {"\\sin^2 x+\\cos^2 x", "\\boxed{1}"}, {"x \\ge 2", "\\boxed{[2,\\infty)}"}};
        o.put("fast_checks_per_s_1_thread", rate(v, fast));
        o.put("symbolic_checks_per_s_1_thread", rate(v, slow));
        int threads = java.lang.Runtime.getRuntime().availableProcessors();
        long t0 = System.nanoTime();
        int per = 20_000;
        List<Thread> ts = new ArrayList<>();
        for (int k = 0; k < threads; k++) {
            Thread t = new Thread(() -> {
                for (int i = 0; i < per; i++) {
                    String[] c = fast[i % fast.length];
                    v.verify(c[0], c[1]);
                }
            });
            ts.add(t);
            t.start();
        }
        for (Thread t : ts) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        o.put("fast_checks_per_s_all_cores", threads * per / ((System.nanoTime() - t0) / 1e9));
        o.put("setting", "typical MATH answers: integers, fractions, radicals, tuples, sets, intervals, units; symbolic = expressions with variables");
    }

    double rate(Verifier v, String[][] cases) {
        int n = 20_000;
        for (int i = 0; i < n; i++) {
            v.verify(cases[i % cases.length][0], cases[i % cases.length][1]);
        }
        long t0 = System.nanoTime();
        for (int i = 0; i < n; i++) {
            v.verify(cases[i % cases.length][0], cases[i % cases.length][1]);
        }
        return n / ((System.nanoTime() - t0) / 1e9);
    }

    /** Two RL steps of the CPU default, split by stage (the second is reported). */
    void rlStep(ObjectNode o) throws Exception {
        List<com.fasterxml.jackson.databind.JsonNode> steps = defaultRunSteps(Map.of(), 3);
        var last = steps.get(steps.size() - 1);
        for (String k : new String[] {"time_rollout", "time_reward", "time_reference", "time_update", "time_step", "tokens_per_s"}) {
            o.put(k, last.path(k).asDouble());
        }
        o.put("setting", "tiny-cpu default: 32 prompts × 8 samples, 12 new tokens, GRPO, k1 in reward (3rd step)");
    }

    static final String[] STEP_TIMES = {"time_step", "time_rollout", "time_reward", "time_reference", "time_update",
        "time_grad_reduce", "time_param_sync"};

    /**
     * The same RL step data parallel over two CPU "devices" (a replica and a thread each, the libtorch
     * threads shared out) against one device with all of them. The two alternate, twice each (a shared
     * machine drifts); medians over steps 3–6 of every run.
     */
    void rlStepDataParallel(ObjectNode o) throws Exception {
        int threads = ai.djl.pytorch.jni.JniUtils.getNumThreads();
        Map<String, Map<String, List<Double>>> times = new LinkedHashMap<>();
        for (int round = 0; round < 2; round++) {
            for (String devices : new String[] {"cpu", "cpu,cpu"}) {
                var steps = defaultRunSteps(Map.of("model.device", devices, "train.parallel", "data"), 6);
                for (var n : steps.subList(2, steps.size())) {
                    for (String k : STEP_TIMES) {
                        if (n.has(k)) {
                            times.computeIfAbsent(devices, x -> new LinkedHashMap<>()).computeIfAbsent(k, x -> new ArrayList<>())
                                    .add(n.get(k).asDouble());
                        }
                    }
                }
            }
        }
        ObjectNode one = o.putObject("one_device"), two = o.putObject("two_devices_data_parallel");
        one.put("libtorch_threads", threads);
        two.put("libtorch_threads_per_replica", Math.max(1, threads / 2));
        times.get("cpu").forEach((k, v) -> one.put(k, median(v)));
        times.get("cpu,cpu").forEach((k, v) -> two.put(k, median(v)));
        o.put("speedup", median(times.get("cpu").get("time_step")) / median(times.get("cpu,cpu").get("time_step")));
        o.put("setting", "tiny-cpu default (32 prompts × 8 samples, 12 new tokens, GRPO): one device with all libtorch threads"
                + " against two CPU devices data parallel; medians of steps 3–6 over two alternating runs each");
    }

    /**
     * The default run's RL step with off-policy lag 1, generation on a copy of the policy on a second
     * CPU "device" (one libtorch thread each), done in turn against overlapped with the update. The two
     * alternate, twice each; medians over steps 3–8 (the first fills the queue). Overlapped, a step
     * should cost about max(generation, update), not their sum.
     */
    void rlStepOverlap(ObjectNode o) throws Exception {
        // three settings back to back, alternating: the plain default (no copy, all threads on the one replica), the
        // lagged run with a copy on rollout.devices done in turn, and the same overlapped; with the copy on the same
        // CPU both sides share its cores (each gets half the libtorch threads), so "in turn" is not the default's speed
        Map<String, Map<String, Object>> settings = new LinkedHashMap<>();
        settings.put("plain_default", Map.of());
        settings.put("in_turn", Map.of("algorithm.off_policy_lag", 1, "rollout.devices", "cpu", "rollout.overlap", false));
        settings.put("overlapped", Map.of("algorithm.off_policy_lag", 1, "rollout.devices", "cpu", "rollout.overlap", true));
        Map<String, Map<String, List<Double>>> times = new LinkedHashMap<>();
        String[] keys = {"time_step", "time_rollout", "time_reward", "time_reference", "time_update", "time_overlap_wait"};
        for (int round = 0; round < 2; round++) {
            for (var e : settings.entrySet()) {
                var steps = defaultRunSteps(e.getValue(), 8);
                for (var n : steps.subList(2, steps.size())) {
                    for (String k : keys) {
                        times.computeIfAbsent(e.getKey(), x -> new LinkedHashMap<>()).computeIfAbsent(k, x -> new ArrayList<>())
                                .add(n.path(k).asDouble());
                    }
                }
            }
        }
        Map<String, Map<String, Double>> med = new LinkedHashMap<>();
        times.forEach((name, byKey) -> {
            Map<String, Double> m = new LinkedHashMap<>();
            byKey.forEach((k, v) -> m.put(k, median(v)));
            med.put(name, m);
            m.forEach(o.putObject(name)::put);
        });
        Map<String, Double> ov = med.get("overlapped");
        double generation = ov.get("time_rollout") + ov.get("time_reward"), update = ov.get("time_reference") + ov.get("time_update");
        o.put("overlapped_step_vs_max_generation_update", ov.get("time_step") / Math.max(generation, update));
        o.put("speedup_vs_in_turn", med.get("in_turn").get("time_step") / ov.get("time_step"));
        o.put("speedup_vs_plain_default", med.get("plain_default").get("time_step") / ov.get("time_step"));
        o.put("setting", "tiny-cpu default (32 prompts × 8 samples, 12 new tokens, GRPO); plain_default: as shipped; in_turn and"
                + " overlapped: algorithm.off_policy_lag 1 with a copy of the policy on rollout.devices cpu (the training replica and"
                + " the copy each get half the libtorch threads); medians of steps 3–8 over two alternating runs each");
    }

    /**
     * One row of 64–16k tokens through a reference pass and an update's forward and backward, with eager
     * and fused attention, on a Qwen2-shaped model (GQA, 21 M parameters): seconds and the process's peak
     * resident memory (its high-water mark reset before each row). Eager runs up to 4k: its scores at 8k
     * already take 2 GiB a layer, kept for the backward. The rows under 1k locate where the two cross
     * (model.attention: auto's threshold, klrl.model.Attention.AUTO_MIN_TOKENS).
     */
    void attentionLong(ObjectNode o) throws Exception {
        TinyModel.Spec spec = new TinyModel.Spec("qwen2", 256, 6, 8, 2, 704, 1, "F32", Long.MAX_VALUE, false, 0.02, 32000);
        o.put("setting", "qwen2-shaped 256 hidden, 6 layers, 8 heads / 2 kv heads, vocab 32000 (random weights), fp32; one row,"
                + " half prompt half response: a no-grad forward, then forward + backward; each mode in a fresh process of its own,"
                + " rows in ascending length (under 1k tokens the median of --repeats); peak RSS above the process's before the first row");
        if (attentionMode != null) {
            attentionRows(spec, attentionMode, o.putObject(attentionMode));
            return;
        }
        // each mode in a process of its own: memory a process has touched stays resident (and its first rows pay the
        // page faults), so two modes in one process would measure their order, not themselves
        List<String> jvm = childJvm(BenchCommand.class.getName(), "--only", "attention-long", "--device", device, "--repeats",
                String.valueOf(repeats), "--attention-mode");
        for (String mode : new String[] {"eager", "sdpa"}) {
            List<String> cmd = new ArrayList<>(jvm);
            cmd.add(mode);
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD);
            klrl.util.Processes.endWithThisProcess(pb); // a bench killed outright takes its measuring process along
            Process p = pb.start();
            String json = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
            if (p.waitFor() != 0) {
                throw new IllegalStateException("attention-long " + mode + " exited " + p.exitValue());
            }
            o.set(mode, Json.MAPPER.readTree(json).path("attention_long").path(mode));
        }
    }

    /**
     * Rows of 64–16k tokens with {@code mode} attention; eager stops at 4k (its scores at 8k take 2 GiB a layer, kept for
     * the backward). A row under 1k takes milliseconds: its seconds are the median of --repeats runs.
     */
    void attentionRows(TinyModel.Spec spec, String mode, ObjectNode m) throws Exception {
        Path dir = Files.createTempDirectory("klrl-bench-attn");
        TinyModel.write(dir, spec);
        try (NDManager root = NDManager.newBaseManager(Runtime.device(device), "PyTorch");
             Decoder model = Decoder.load(dir, root, DataType.FLOAT32).attention(mode)) {
            Runtime.noGradOutsideCollectors();
            m.put("model_parameters", model.config.parameterCount());
            klrl.check.AttentionCheck.rowSeconds(model, 256, 1, root); // warm-up
            long start = peakRssBytes();
            for (int tokens : new int[] {64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}) {
                if (mode.equals("eager") && tokens > 4096) {
                    m.put(tokens + "_tokens", "not run: the scores alone would take " + (2L * 4 * tokens * (long) tokens * 4
                            * spec.layers() >> 30) + " GiB, kept for the backward");
                    continue;
                }
                double[] runs = new double[tokens < 1024 ? Math.max(1, repeats) : 1];
                for (int i = 0; i < runs.length; i++) {
                    runs[i] = klrl.check.AttentionCheck.rowSeconds(model, tokens, tokens, root);
                }
                java.util.Arrays.sort(runs);
                double secs = runs[runs.length / 2];
                ObjectNode r = m.putObject(tokens + "_tokens");
                r.put("seconds", secs);
                r.put("ms_per_token", secs * 1000 / tokens);
                r.put("peak_rss_above_start_gb", (peakRssBytes() - start) / 1e9);
            }
        } finally {
            klrl.checkpoint.Checkpoints.deleteTree(dir);
        }
    }

    /** A java command line for a child process: this JVM's binary, options and class path, then {@code args}. */
    static List<String> childJvm(String... args) {
        List<String> jvm = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        jvm.addAll(java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments());
        jvm.addAll(List.of("-cp", System.getProperty("java.class.path")));
        jvm.addAll(List.of(args));
        return jvm;
    }

    /** VmHWM of this process in bytes, 0 where /proc has none. */
    static long peakRssBytes() {
        return peakRssKb("self") * 1024;
    }

    /** VmHWM of process {@code pid} ("self" for this one) in kB, 0 when it is gone or /proc has none. */
    static long peakRssKb(String pid) {
        try {
            for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
                if (l.startsWith("VmHWM:")) {
                    return Long.parseLong(l.replaceAll("[^0-9]", ""));
                }
            }
        } catch (java.io.IOException | NumberFormatException e) {
            return 0;
        }
        return 0;
    }

    /** The step lines of a short run of the CPU default with {@code overrides}. */
    static List<com.fasterxml.jackson.databind.JsonNode> defaultRunSteps(Map<String, Object> overrides, int steps) throws Exception {
        Path outDir = Files.createTempDirectory("klrl-bench-run");
        Map<String, Object> ov = new LinkedHashMap<>(overrides);
        ov.put("output_dir", outDir.toString());
        ov.put("train.max_steps", steps);
        ov.put("eval.every", 0);
        ov.put("eval.before_start", false);
        try (Trainer t = new Trainer(ConfigLoader.load(null, ov), null, s -> { })) {
            t.run(s -> { });
        }
        List<com.fasterxml.jackson.databind.JsonNode> out = new ArrayList<>();
        for (String l : Files.readAllLines(outDir.resolve("metrics.jsonl"))) {
            var n = Json.MAPPER.readTree(l);
            if (n.has("time_step")) {
                out.add(n);
            }
        }
        klrl.checkpoint.Checkpoints.deleteTree(outDir);
        return out;
    }
}
