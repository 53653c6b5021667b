package klrl.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import ai.djl.Device;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.model.Decoder;
import klrl.model.ModelConfig;
import klrl.model.Placement;
import klrl.util.Json;
import klrl.util.UserError;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Memory plan from config.json and the training config alone (no weights read, nothing allocated):
 * what the fullest GPU holds when decoder layers are placed over {@code --gpus} devices exactly as
 * the trainer places them ({@link Placement#balanced}).
 */
@Command(name = "plan", mixinStandardHelpOptions = true,
        description = "Parameter count and per-GPU memory (weights, reference, gradients, optimizer, activations, KV cache).")
public final class PlanCommand implements Callable<Integer> {
    @Option(names = "--config", description = "training YAML or preset (default: tiny-cpu)") String config;
    @Option(names = "--model-config", description = "the model's config.json (default: model.path/config.json)") Path modelConfig;
    @Option(names = "--gpus", defaultValue = "1", description = "GPUs the decoder layers are placed across") int gpus;
    @Option(names = "--gpu-memory-gb", defaultValue = "80") double gpuMemoryGb;
    @Option(names = "--json") boolean json;

    static final double GB = 1024.0 * 1024 * 1024;

    /** Bytes per GPU by component. */
    public record Plan(long parameters, long trainable, Map<String, Double> perGpuGb, double totalGb, boolean fits,
                       int[] layersPerGpu) {}

    public static Plan plan(TrainConfig c, ModelConfig m, int gpus, double gpuMemoryGb) {
        if (gpus < 1) {
            throw new UserError("--gpus must be ≥ 1");
        }
        long p = m.parameterCount();
        int bytes = c.model().dtype().equals("float16") ? 2 : 4;
        int r = c.model().lora().rank();
        long trainable = p;
        if (r > 0) {
            long perLayer = 0;
            long h = m.hiddenSize(), q = (long) m.numHeads() * m.headDim(), kv = (long) m.numKvHeads() * m.headDim(), in = m.intermediateSize();
            for (String t : c.model().lora().targetModules()) {
                perLayer += switch (t) {
                    case "q_proj" -> r * (h + q);
                    case "k_proj", "v_proj" -> r * (h + kv);
                    case "o_proj" -> r * (q + h);
                    case "gate_proj", "up_proj" -> r * (h + in);
                    case "down_proj" -> r * (in + h);
                    default -> 0;
                };
            }
            trainable = perLayer * m.numLayers();
        }
        // the fullest GPU of the trainer's own placement bounds what fits
        List<Device> devs = new ArrayList<>();
        for (int i = 0; i < gpus; i++) {
            devs.add(Device.gpu(i));
        }
        Placement place = Placement.balanced(devs, m);
        long[] load = new long[gpus];
        m.expectedTensors().forEach((name, shape) -> load[devs.indexOf(Decoder.deviceOf(name, place))] += count(shape));
        long devParams = java.util.Arrays.stream(load).max().orElse(p);
        int devLayers = java.util.Arrays.stream(place.layerCounts()).max().orElse(m.numLayers());
        long devTrainable = r > 0 ? trainable / m.numLayers() * devLayers : devParams;
        double weights = (double) devParams * bytes;
        double reference = r > 0 ? 0 : weights;                       // LoRA: the base with adapters off
        // fp16 training keeps fp32 master weights beside the fp16 copy
        double master = bytes == 2 ? 4.0 * devTrainable : 0;
        double grads = 4.0 * devTrainable;
        double optimizer = 8.0 * devTrainable;                        // AdamW m and v, fp32
        int micro = c.train().microBatchSize();
        long seq = c.data().maxPromptTokens() + c.rollout().maxNewTokens();
        // Activation checkpointing per decoder layer: each GPU keeps its layers' inputs, plus one
        // layer's full activations while it is recomputed (Korthikanti et al.: s·b·h·(34 + 5·a·s/h)
        // bytes in 16-bit), plus the last stage's logits, log-softmax and their gradient in fp32.
        double boundaries = (double) micro * seq * m.hiddenSize() * bytes * devLayers;
        double oneLayer = (double) micro * seq * m.hiddenSize() * (34.0 + 5.0 * m.numHeads() * seq / m.hiddenSize()) * bytes / 2;
        double logits = (double) micro * c.rollout().maxNewTokens() * m.vocabSize() * 4 * 3;
        double act = boundaries + oneLayer + logits;
        double stat = weights + master + reference + grads + optimizer;
        // The KV cache is sized from what is left after the prefill's activation budget: rollouts run in
        // chunks of as many sequences as fit.
        double prefill = c.rollout().prefillBytes();
        double kvPerRow = 2.0 * devLayers * m.numKvHeads() * m.headDim() * seq * bytes;
        long rows = (long) c.train().batchSize() * c.rollout().n();
        long chunk = Math.max(0, Math.min(rows, (long) Math.floor((0.9 * gpuMemoryGb * GB - stat - prefill) / kvPerRow)));
        double kv = chunk * kvPerRow;
        Map<String, Double> g = new java.util.LinkedHashMap<>();
        g.put("weights", (weights + master) / GB);
        g.put("reference", reference / GB);
        g.put("gradients", grads / GB);
        g.put("optimizer", optimizer / GB);
        g.put("activations", act / GB);
        g.put("kv_cache", kv / GB);
        g.put("prefill", prefill / GB);
        g.put("rollout_chunk_sequences", (double) chunk);
        // rollout (KV cache) and update (activations) do not coexist: memory is freed between them
        double total = (stat + Math.max(act, kv + prefill)) / GB;
        boolean fits = chunk >= 1 && (stat + act) / GB <= 0.9 * gpuMemoryGb;
        return new Plan(p, trainable, g, total, fits, place.layerCounts());
    }

    private static long count(long[] shape) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }

    @Override
    public Integer call() {
        TrainConfig c = ConfigLoader.load(config, Map.of());
        Path mc = modelConfig;
        if (mc == null) {
            if (c.model().path() == null) {
                throw new UserError("plan: the config has no model.path; pass --model-config path/to/config.json");
            }
            mc = Path.of(c.model().path()).resolve("config.json");
        }
        ModelConfig m = ModelConfig.parse(Json.read(mc), mc.toString());
        Plan p = plan(c, m, gpus, gpuMemoryGb);
        if (json) {
            ObjectNode o = Json.MAPPER.createObjectNode();
            o.put("parameters", p.parameters());
            o.put("trainable_parameters", p.trainable());
            o.put("gpus", gpus);
            o.put("gpu_memory_gb", gpuMemoryGb);
            var lp = o.putArray("layers_per_gpu");
            for (int layers : p.layersPerGpu()) {
                lp.add(layers);
            }
            ObjectNode g = o.putObject("per_gpu_gb");
            p.perGpuGb().forEach(g::put);
            g.put("total", p.totalGb());
            o.put("fits", p.fits());
            System.out.println(Json.write(o));
        } else {
            System.out.printf("parameters %,d (trainable %,d), %d GPU(s) of %.0f GB, layers per GPU %s%n", p.parameters(),
                    p.trainable(), gpus, gpuMemoryGb, java.util.Arrays.toString(p.layersPerGpu()));
            System.out.println("per GPU (the fullest):");
            p.perGpuGb().forEach((k, v) -> System.out.printf(k.startsWith("rollout") ? "  %-12s %8.0f%n" : "  %-12s %8.2f GB%n", k, v));
            System.out.printf("  %-12s %8.2f GB  → %s%n", "total", p.totalGb(), p.fits() ? "fits" : "does NOT fit (90% of memory)");
        }
        return 0;
    }
}
