package klrl.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import klrl.rollout.Sample;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Layer placement run as a pipeline trains as the same placement one group at a time and as one
 * device: per-step losses, gradient norms and KL, the rollout after the last step and the saved
 * weights, fp32 over several steps. Every computing thread runs one libtorch thread here (the
 * stage threads, and the caller's in the other runs), so kernels reduce in the same order on each side.
 */
@Tag("e2e")
class PipelineRunTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    static final int STEPS = 4;

    record Result(List<Map<String, Object>> steps, List<Sample> rollout, Map<String, float[]> weights) {}

    Result run(String name, Map<String, Object> settings) throws Exception {
        Map<String, Object> o = new HashMap<>(settings);
        o.put("train.max_steps", STEPS);
        o.put("train.micro_batch_size", 2); // 4 micro-batches per mini-batch: the pipeline fills and drains
        Path out = tmp.resolve(name);
        return klrl.TorchThreads.with(1, () -> trainAndRead(out, o));
    }

    private static Result trainAndRead(Path out, Map<String, Object> o) throws Exception {
        try (Trainer t = new Trainer(TrainerTest.small(out, o), null, s -> { })) {
            List<Map<String, Object>> steps = new ArrayList<>();
            for (int s = 0; s < STEPS; s++) {
                steps.add(t.step(s).asMap());
            }
            Path saved = t.save(STEPS);
            List<Sample> rollout = t.rollout(STEPS);
            return new Result(steps, rollout, TrainerTest.savedWeights(saved));
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"grpo", "ppo", "grpo-checkpointed-full-kl", "grpo-lora"})
    void pipelinedLayersTrainAsSequentialLayersAndAsOneDevice(String variant) throws Exception {
        Map<String, Object> s = new HashMap<>(switch (variant) {
            case "ppo" -> Map.<String, Object>of("algorithm.name", "ppo", "algorithm.ppo_epochs", 2);
            case "grpo-checkpointed-full-kl" -> Map.<String, Object>of("train.checkpoint_layers", 1, "kl.estimator", "full",
                    "kl.placement", "loss");
            case "grpo-lora" -> Map.<String, Object>of("model.lora.rank", 4, "optim.lr", 1e-3, "kl.estimator", "full",
                    "kl.placement", "loss");
            default -> Map.<String, Object>of();
        });
        s.put("optim.lr", s.getOrDefault("optim.lr", 3e-4));
        Map<String, Object> layers = new HashMap<>(s);
        layers.putAll(Map.of("model.device", "cpu,cpu,cpu", "train.parallel", "layers"));
        Map<String, Object> sequential = new HashMap<>(layers);
        sequential.put("train.pipeline", false);
        Result pipe = run(variant + "-pipelined", layers), seq = run(variant + "-sequential", sequential), one = run(variant + "-one", s);
        // pipelined vs the same placement one group at a time: the same sums in the same order
        for (int i = 0; i < STEPS; i++) {
            Map<String, Object> a = seq.steps().get(i), b = pipe.steps().get(i);
            for (String k : new String[] {"loss_total", "grad_norm", "entropy", "kl_k1", "reward_mean", "loss_policy"}) {
                assertEquals(a.get(k), b.get(k), variant + " step " + (i + 1) + " " + k);
            }
            double busy = ((Number) b.get("pipeline_busy")).doubleValue(), ref = ((Number) b.get("pipeline_busy_reference")).doubleValue();
            assertTrue(busy > 0 && busy <= 1 && ref > 0 && ref <= 1, b.toString());
            assertTrue(!a.containsKey("pipeline_busy"), "no pipeline, no busy fraction");
        }
        seq.weights().forEach((k, v) -> assertArrayEquals(v, pipe.weights().get(k), variant + " " + k));
        // and vs one device (no stages: one end-to-end backward), within 1e-6 relative
        for (int i = 0; i < STEPS; i++) {
            for (String k : new String[] {"loss_total", "grad_norm", "entropy", "kl_k1", "reward_mean"}) {
                double a = ((Number) one.steps().get(i).get(k)).doubleValue(), b = ((Number) pipe.steps().get(i).get(k)).doubleValue();
                assertEquals(a, b, 1e-6 * Math.max(1e-3, Math.abs(a)), variant + " step " + (i + 1) + " " + k + " vs one device");
            }
        }
        double worst = 0;
        for (var e : one.weights().entrySet()) {
            float[] a = e.getValue(), b = pipe.weights().get(e.getKey());
            for (int j = 0; j < a.length; j++) {
                worst = Math.max(worst, Math.abs(a[j] - b[j]) / Math.max(1e-3, Math.abs(a[j])));
            }
        }
        assertTrue(worst <= 1e-6, variant + ": weights vs one device differ by " + worst + " relative");
        for (int r = 0; r < one.rollout().size(); r++) {
            assertArrayEquals(one.rollout().get(r).responseIds(), pipe.rollout().get(r).responseIds(), "rollout row " + r);
        }
    }
}
