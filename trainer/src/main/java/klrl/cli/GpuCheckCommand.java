package klrl.cli;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import klrl.config.ConfigLoader;
import klrl.model.Decoder;
import klrl.model.ModelConfig;
import klrl.model.Placement;
import klrl.model.TinyModel;
import klrl.train.PolicyForward;
import klrl.train.SequenceBatch;
import klrl.train.Trainer;
import klrl.util.Json;
import klrl.util.Runtime;
import klrl.util.UserError;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The first thing to run on a GPU node: everything in Java, so it works inside the image (which has
 * no Python). Compares logits on the device with CPU float32 ones, layer placement over several
 * devices with one device (logits and gradients), data-parallel gradients (a replica per device,
 * summed onto the first) with one device's, then times a few RL steps on one device, with the layers
 * placed over all devices, and data parallel over all of them.
 */
@Command(name = "gpu-check", mixinStandardHelpOptions = true,
        description = "Check a GPU node: CPU vs GPU logits, multi-GPU layer placement (pipelined and one device at a time) and data parallelism, a few timed RL steps.")
public final class GpuCheckCommand implements Callable<Integer> {
    @Option(names = "--device", defaultValue = "cuda", description = "device to check (default: ${DEFAULT-VALUE})") String device;
    @Option(names = "--devices", description = "devices for layer placement and data parallelism (default: every visible GPU, when 2 or more)")
    String devices;
    @Option(names = "--steps", defaultValue = "3", description = "RL steps to time") int steps;
    @Option(names = "--json") boolean json;

    static final long[] IDS = {5, 17, 33, 64, 100, 2, 250, 7, 9, 11, 300, 42};
    static final SequenceBatch BATCH = SequenceBatch.of(List.of(new long[] {5, 17, 33}, new long[] {7}),
            List.of(new long[] {64, 100}, new long[] {2, 250, 9}), 0);

    @Override
    public Integer call() throws Exception {
        Engine engine = Runtime.engine();
        Device dev = Runtime.device(device);
        List<Device> placed = devices != null ? Placement.parseDevices(devices, Runtime::device)
                : engine.getGpuCount() >= 2 ? allGpus(engine.getGpuCount()) : List.of();
        ObjectNode out = Json.MAPPER.createObjectNode();
        out.put("engine", engine.getEngineName() + " " + engine.getVersion());
        out.put("gpus_visible", engine.getGpuCount());
        out.put("device", dev.toString());
        boolean tf32 = dev.isGpu() && Runtime.tf32();
        out.put("fp32_matmuls", tf32 ? "tf32" : "ieee");
        Map<String, Boolean> checks = new LinkedHashMap<>();
        Path work = Files.createTempDirectory("klrl-gpu-check");
        Path tiny = work.resolve("tiny");
        // 4 layers so placement over up to 4 devices has a layer each
        TinyModel.write(tiny, new TinyModel.Spec("llama", 64, 4, 4, 2, 176, 3, "F32", Long.MAX_VALUE, false, 0.15, 0));
        ModelConfig cfg = ModelConfig.load(tiny);
        float[] cpu = logits(tiny, Placement.single(Device.cpu(), cfg.numLayers()), DataType.FLOAT32);
        double d32 = maxDiff(cpu, logits(tiny, Placement.single(dev, cfg.numLayers()), DataType.FLOAT32));
        double d16 = maxDiff(cpu, logits(tiny, Placement.single(dev, cfg.numLayers()), DataType.FLOAT16));
        out.put("logits_fp32_max_abs_diff_vs_cpu", d32);
        out.put("logits_fp16_max_abs_diff_vs_cpu", d16);
        checks.put("logits_fp32", d32 < (tf32 ? 1e-2 : 1e-3)); // TF32 keeps 10 mantissa bits
        checks.put("logits_fp16", d16 < 5e-2);
        // Fused attention (model.attention: sdpa) against eager on this device: log-probs and gradients over
        // packed rows, then one 4k- and one 16k-token row through a reference pass and an update with each
        attention(tiny, dev, tf32, out, checks);
        if (placed.size() >= 2) {
            Placement p = Placement.balanced(placed.subList(0, Math.min(placed.size(), cfg.numLayers())), cfg);
            out.put("placement", p.devices().stream().map(GpuCheckCommand::spec).toList() + " layers " + java.util.Arrays.toString(p.layerCounts()));
            double dl = maxDiff(cpu, logits(tiny, p, DataType.FLOAT32));
            Map<String, float[]> one = gradients(tiny, Placement.single(p.output(), cfg.numLayers()), 0);
            double dg = Math.max(klrl.check.PipelineCheck.gradientDiff(one, gradients(tiny, p, 0)), klrl.check.PipelineCheck.gradientDiff(one, gradients(tiny, p, 1)));
            out.put("placement_logits_max_abs_diff_vs_cpu", dl);
            out.put("placement_gradients_max_rel_diff", dg);
            checks.put("placement_logits", dl < 1e-3);
            checks.put("placement_gradients", dg < 1e-3);
            // the pipeline (a thread per device, 1F1B) against the same placement one group at a time, over 4 micro-batches
            List<SequenceBatch> mbs = List.of(BATCH, BATCH.slice(0, 1), BATCH.slice(1, 2), BATCH);
            double dp = 0;
            for (int cl : new int[] {0, 1}) {
                dp = Math.max(dp, klrl.check.PipelineCheck.gradientDiff(klrl.check.PipelineCheck.gradients(tiny, p, mbs, cl, false),
                        klrl.check.PipelineCheck.gradients(tiny, p, mbs, cl, true)));
            }
            out.put("pipeline_gradients_max_rel_diff", dp);
            checks.put("pipeline_gradients", dp < 1e-5);
        } else {
            out.put("placement", "not checked: one device (give --devices 0,1 on a multi-GPU node)");
        }
        // Data parallelism over the same devices: a replica on each (copied device to device), one
        // sequence per replica differentiated in its own thread, gradients added onto the first.
        if (placed.size() >= 2) {
            Map<String, float[]> one = rowGradients(tiny, placed.subList(0, 1), placed.size());
            double dg = klrl.check.PipelineCheck.gradientDiff(one, rowGradients(tiny, placed, placed.size()));
            out.put("data_parallel_gradients_max_rel_diff", dg);
            checks.put("data_parallel_gradients", dg < 1e-3);
        }
        // A few timed RL steps on the tiny model: on the device; with several devices also with the
        // layers placed over them, and data parallel over them.
        checks.put("training_steps", timings(out.putArray("steps"), rlSteps(work.resolve("run"), tiny, device, "auto", true)));
        if (placed.size() >= 2) {
            String all = String.join(",", placed.stream().map(GpuCheckCommand::spec).toList());
            checks.put("layer_placement_steps", timings(out.putArray("steps_layer_placement"),
                    rlSteps(work.resolve("run-layers"), tiny, all, "layers", true)));
            checks.put("layer_placement_sequential_steps", timings(out.putArray("steps_layer_placement_sequential"),
                    rlSteps(work.resolve("run-layers-sequential"), tiny, all, "layers", false)));
            checks.put("data_parallel_steps", timings(out.putArray("steps_data_parallel"),
                    rlSteps(work.resolve("run-data"), tiny, all, "data", true)));
        }
        var c = out.putObject("checks");
        checks.forEach(c::put);
        boolean ok = checks.values().stream().allMatch(b -> b);
        out.put("passed", ok);
        if (json) {
            System.out.println(Json.write(out));
        } else {
            System.out.println(out.toPrettyString());
            System.out.println(ok ? "gpu-check passed" : "gpu-check FAILED: " + checks);
        }
        return ok ? 0 : 1;
    }

    private static void attention(Path tiny, Device dev, boolean tf32, ObjectNode out, Map<String, Boolean> checks) {
        ModelConfig cfg = ModelConfig.load(tiny);
        try (NDManager root = NDManager.newBaseManager(dev, "PyTorch");
             Decoder model = Decoder.load(tiny, root, DataType.FLOAT32, Placement.single(dev, cfg.numLayers()))) {
            Runtime.noGradOutsideCollectors();
            klrl.check.AttentionCheck.Agreement a = klrl.check.AttentionCheck.compare(model, 6, 96, 1, root);
            out.put("attention_sdpa_logprob_max_abs_diff", a.logprob());
            out.put("attention_sdpa_gradient_max_rel_diff", a.gradient());
            checks.put("attention_sdpa", a.logprob() < (tf32 ? 1e-2 : 1e-4) && a.gradient() < (tf32 ? 1e-2 : 1e-3));
            // fp16, as the 7B/8B presets train: within fp16's rounding (one pass on CPU: log-probs 1e-3, gradients 3e-3)
            try (Decoder half = Decoder.load(tiny, root, DataType.FLOAT16, Placement.single(dev, cfg.numLayers()))) {
                klrl.check.AttentionCheck.Agreement h = klrl.check.AttentionCheck.compare(half, 6, 96, 1, root);
                out.put("attention_sdpa_fp16_logprob_max_abs_diff", h.logprob());
                out.put("attention_sdpa_fp16_gradient_max_rel_diff", h.gradient());
                checks.put("attention_sdpa_fp16", h.logprob() < 2e-2 && h.gradient() < 5e-2);
            }
            ObjectNode times = out.putObject("attention_row_seconds");
            // on a CPU "device" (the check's own test) short rows: eager's 16k scores would take 17 GB there
            for (int tokens : dev.isGpu() ? new int[] {4096, 16384} : new int[] {512, 1024}) {
                for (String mode : new String[] {"eager", "sdpa"}) {
                    try {
                        times.put(mode + "_" + tokens, klrl.check.AttentionCheck.rowSeconds(model.attention(mode), tokens, tokens, root));
                    } catch (ai.djl.engine.EngineException | OutOfMemoryError e) { // eager's scores at 16k may not fit
                        times.put(mode + "_" + tokens, "failed: " + Json.firstLine(String.valueOf(e.getMessage())));
                    }
                    if (dev.isGpu()) {
                        ai.djl.pytorch.jni.JniUtils.emptyCudaCache();
                    }
                }
            }
        }
    }

    /** Step lines of a short RL run of the tiny model on {@code devices} (train.parallel {@code parallel}, train.pipeline {@code pipeline}). */
    private List<JsonNode> rlSteps(Path run, Path tiny, String devices, String parallel, boolean pipeline) throws Exception {
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("model.path", tiny.toString());
        o.put("model.device", devices);
        o.put("train.parallel", parallel);
        o.put("train.pipeline", pipeline);
        o.put("train.max_steps", steps);
        o.put("train.micro_batch_size", 32); // several micro-batches per update, so every replica takes some
        o.put("eval.before_start", false);
        o.put("eval.max_examples", 8);
        o.put("eval.k", 0);
        o.put("checkpoint.every", 0);
        o.put("output_dir", run.toString());
        try (Trainer t = new Trainer(ConfigLoader.load(null, o), null, s -> {})) {
            t.run(s -> {});
        }
        List<JsonNode> lines = new java.util.ArrayList<>();
        for (String line : Files.readAllLines(run.resolve("metrics.jsonl"))) {
            JsonNode n = Json.MAPPER.readTree(line);
            if (n.has("time_step")) {
                lines.add(n);
            }
        }
        return lines;
    }

    /** Copies each step's timings into {@code into}; true when every step ran with a finite loss. */
    private boolean timings(com.fasterxml.jackson.databind.node.ArrayNode into, List<JsonNode> lines) {
        boolean finite = true;
        for (JsonNode n : lines) {
            ObjectNode s = into.addObject();
            for (String k : new String[] {"step", "time_step", "time_rollout", "time_reference", "time_update", "time_grad_reduce",
                "time_param_sync", "pipeline_busy", "pipeline_busy_reference", "tokens_per_s", "loss_total"}) {
                if (n.has(k)) {
                    s.set(k, n.get(k));
                }
            }
            finite &= !n.has("loss_total") || Double.isFinite(n.get("loss_total").asDouble());
        }
        return lines.size() == steps && finite;
    }

    /**
     * Gradients of Σ log π over {@code rows} sequences, with a replica of the model on each of
     * {@code devices} (the first loaded from disk, the others copied from it) taking rows in turn, each
     * replica in its own thread, and the replicas' gradients then added onto the first's in order —
     * what data-parallel training does. One device gives the plain gradient to compare with.
     */
    static Map<String, float[]> rowGradients(Path dir, List<Device> devices, int rows) throws Exception {
        List<long[]> prompts = new java.util.ArrayList<>(), responses = new java.util.ArrayList<>();
        for (int i = 0; i < rows; i++) {
            prompts.add(new long[] {5 + i, 17, 33});
            responses.add(new long[] {64, 100 + 3 * i, 9});
        }
        SequenceBatch batch = SequenceBatch.of(prompts, responses, 0);
        List<NDManager> roots = new java.util.ArrayList<>();
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(devices.size());
        try {
            roots.add(NDManager.newBaseManager(devices.get(0), "PyTorch"));
            Decoder master = Decoder.load(dir, roots.get(0), DataType.FLOAT32, null);
            List<Decoder> reps = new java.util.ArrayList<>(List.of(master));
            for (Device d : devices.subList(1, devices.size())) {
                roots.add(NDManager.newBaseManager(d, "PyTorch"));
                reps.add(master.replica(roots.get(roots.size() - 1), true));
            }
            reps.forEach(r -> r.parameters().values().forEach(a -> a.setRequiresGradient(true)));
            List<java.util.concurrent.Future<?>> done = new java.util.ArrayList<>();
            for (int d = 0; d < reps.size(); d++) {
                int k = d;
                done.add(pool.submit(() -> {
                    Runtime.noGradOutsideCollectors();
                    for (int row = k; row < rows; row += reps.size()) {
                        SequenceBatch b = batch.slice(row, row + 1);
                        try (NDManager m = roots.get(k).newSubManager(); klrl.util.Grad g = klrl.util.Grad.record()) {
                            g.backward(PolicyForward.run(reps.get(k), b, m, 1f, null, false).logp().mul(b.mask(m)).sum());
                        }
                    }
                    return null;
                }));
            }
            for (var f : done) {
                f.get();
            }
            Map<String, float[]> g = new LinkedHashMap<>();
            master.parameters().forEach((name, v) -> {
                NDArray sum = v.getGradient();
                for (Decoder r : reps.subList(1, reps.size())) {
                    sum = sum.add(r.parameters().get(name).getGradient().toDevice(v.getDevice(), false));
                }
                g.put(name, sum.toDevice(Device.cpu(), false).toFloatArray());
            });
            return g;
        } finally {
            pool.shutdownNow();
            for (int i = roots.size() - 1; i >= 0; i--) {
                roots.get(i).close();
            }
        }
    }

    private static List<Device> allGpus(int n) {
        List<Device> d = new java.util.ArrayList<>();
        for (int i = 0; i < n; i++) {
            d.add(Device.gpu(i));
        }
        return d;
    }

    private static String spec(Device d) {
        return d.isGpu() ? "cuda:" + d.getDeviceId() : "cpu";
    }

    static float[] logits(Path dir, Placement p, DataType dtype) {
        try (NDManager root = NDManager.newBaseManager(p.output(), "PyTorch");
             Decoder model = Decoder.load(dir, root, dtype, p);
             NDManager m = root.newSubManager()) {
            return model.logits(m, IDS).toDevice(Device.cpu(), false).toFloatArray();
        }
    }

    /** Parameter gradients of Σ log π over BATCH's responses: end to end on one device, else through the staged backward. */
    static Map<String, float[]> gradients(Path dir, Placement p, int checkpointLayers) {
        return klrl.check.PipelineCheck.gradients(dir, p, List.of(BATCH), checkpointLayers, false);
    }

    static double maxDiff(float[] a, float[] b) {
        if (a.length != b.length) {
            throw new UserError("gpu-check: logits of different sizes " + a.length + " vs " + b.length);
        }
        double d = 0;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
        }
        return Double.isNaN(d) ? Double.POSITIVE_INFINITY : d;
    }
}
