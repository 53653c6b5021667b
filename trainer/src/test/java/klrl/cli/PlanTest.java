package klrl.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import klrl.TestPaths;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.model.ModelConfig;
import org.junit.jupiter.api.Test;

/** The memory plan for the paper's two models, from their real config.json files. */
class PlanTest {
    static ModelConfig model(String name) {
        return ModelConfig.load(TestPaths.model(name));
    }

    @Test
    void parameterCountsMatchThePublishedModels() {
        assertEquals(7_615_616_512L, model("qwen2.5").parameterCount());   // Qwen2.5-7B: 7.62 B
        assertEquals(8_030_261_248L, model("llama3.1").parameterCount());  // Llama-3.1-8B: 8.03 B
    }

    @Test
    void fullFineTuningNeedsSeveralGpusAndLoraFitsOne() {
        for (String[] p : new String[][] {{"qwen2.5-7b-math", "qwen2.5"}, {"llama3.1-8b-math", "llama3.1"}}) {
            TrainConfig full = ConfigLoader.load(p[0], Map.of());
            klrl.train.MemoryPlan.Plan one = klrl.train.MemoryPlan.plan(full, model(p[1]), 1, 80);
            klrl.train.MemoryPlan.Plan eight = klrl.train.MemoryPlan.plan(full, model(p[1]), 8, 80);
            assertFalse(one.fits(), p[0] + " full FT on one 80 GB GPU: " + one.totalGb());
            assertTrue(eight.fits(), p[0] + " full FT on 8×80 GB: " + eight.totalGb());
            // weights fp16 (2 B) + fp32 master (4 B) per parameter; the fullest of 8 GPUs holds at most
            // an eighth plus one layer (the embedding and lm_head weigh a few layers each)
            double w = eight.perGpuGb().get("weights") * (1L << 30) / 6.0;
            assertTrue(w >= one.parameters() / 8.0 && w <= one.parameters() / 8.0 + model(p[1]).layerParameterCount(),
                    p[0] + " fullest GPU holds " + w + " parameters");
            assertEquals(model(p[1]).numLayers(), java.util.Arrays.stream(eight.layersPerGpu()).sum());
            // auto: full fine-tuning places layers (no replica fits one GPU) ...
            assertEquals("layers", eight.parallel());
            assertFalse(klrl.train.MemoryPlan.plan(full, model(p[1]), 8, 80, true).fits());
            TrainConfig lora = ConfigLoader.load(p[0], Map.of("model.lora.rank", 64, "train.micro_batch_size", 2));
            klrl.train.MemoryPlan.Plan l = klrl.train.MemoryPlan.plan(lora, model(p[1]), 1, 80);
            assertTrue(l.fits(), p[0] + " LoRA on one 80 GB GPU: " + l.totalGb() + " " + l.perGpuGb());
            assertEquals(0.0, l.perGpuGb().get("reference"));
            assertTrue(l.trainable() < one.parameters() / 20);
            // ... and LoRA runs a replica on each of 8 GPUs, each rolling out an eighth of the batch
            klrl.train.MemoryPlan.Plan l8 = klrl.train.MemoryPlan.plan(lora, model(p[1]), 8, 80);
            assertEquals("data", l8.parallel());
            assertTrue(l8.fits() && l8.perGpuGb().get("weights").equals(l.perGpuGb().get("weights")), l8.perGpuGb().toString());
            assertTrue(l8.perGpuGb().get("rollout_chunk_sequences") <= l.perGpuGb().get("rollout_chunk_sequences"));
            // train.parallel: layers forces placement even where a replica fits
            assertEquals("layers", klrl.train.MemoryPlan.plan(ConfigLoader.load(p[0], Map.of("model.lora.rank", 64,
                    "train.micro_batch_size", 2, "train.parallel", "layers")), model(p[1]), 8, 80).parallel());
        }
    }

    @Test
    void commandPrintsJson() {
        var r = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config",
                TestPaths.model("qwen2.5").resolve("config.json").toString(), "--gpus", "8", "--json");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("\"parameters\":7615616512") && r.out().contains("\"fits\":true")
                && r.out().contains("\"parallel\":\"layers\""), r.out());
        var text = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config",
                TestPaths.model("qwen2.5").resolve("config.json").toString(), "--gpus", "8", "--set", "model.lora.rank=64");
        assertEquals(0, text.code(), text.err());
        assertTrue(text.out().contains("parallel: data"), text.out());
    }

    @Test
    void theShippedPresetsAndTheTinyDefaultPlanWithNoModelOnDisk() throws Exception {
        // the presets point at /models/…, which this machine does not have: the published shapes are bundled
        for (String[] p : new String[][] {{"qwen2.5-7b-math", "7615616512"}, {"llama3.1-8b-math", "8030261248"}}) {
            var r = CliTest.run("plan", "--config", p[0], "--gpus", "8", "--json");
            assertEquals(0, r.code(), r.err());
            assertTrue(r.out().contains("\"parameters\":" + p[1]) && r.out().contains("\"fits\":true"), r.out());
            assertTrue(r.err().contains("using the published shape"), r.err());
        }
        // a token budget bounds the activations: 4 rows of up to 4,096 positions hold more than a 2,048-token budget
        var rows = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--json", "--set", "model.lora.rank=64");
        var budget = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--json", "--set", "model.lora.rank=64",
                "--set", "train.max_tokens_per_micro_batch=2048");
        double actRows = klrl.util.Json.MAPPER.readTree(rows.out()).path("per_gpu_gb").path("activations").asDouble();
        var b = klrl.util.Json.MAPPER.readTree(budget.out());
        assertTrue(b.path("per_gpu_gb").path("activations").asDouble() < actRows && b.path("micro_batch").asText().equals("2048 tokens"),
                budget.out());
        var tiny = CliTest.run("plan", "--config", "tiny-cpu", "--json");
        assertEquals(0, tiny.code(), tiny.err());
        assertTrue(tiny.out().contains("\"layers_per_gpu\":[3]"), tiny.out());
        // a folder that is neither on disk nor known: one line saying what to pass
        var unknown = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--set", "model.path=/nowhere/MyModel");
        assertEquals(2, unknown.code());
        assertTrue(unknown.err().contains("--model-config") && unknown.err().strip().lines().count() == 1, unknown.err());
    }
}
