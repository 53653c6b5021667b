package klrl.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import klrl.TestPaths;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.model.ModelConfig;
import klrl.plan.MemoryPlan;
import klrl.util.Json;
import klrl.util.UserError;
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
            klrl.plan.MemoryPlan.Plan one = klrl.plan.MemoryPlan.plan(full, model(p[1]), 1, 80);
            klrl.plan.MemoryPlan.Plan eight = klrl.plan.MemoryPlan.plan(full, model(p[1]), 8, 80);
            assertFalse(one.fits(), p[0] + " full FT on one 80 GB GPU: " + one.totalGb());
            assertTrue(eight.fits(), p[0] + " full FT on 8×80 GB: " + eight.totalGb());
            // weights fp16 (2 B) + fp32 master (4 B) per parameter; the fullest of 8 GPUs holds at most
            // an eighth plus one layer (the embedding and lm_head weigh a few layers each)
            double w = eight.partsGb().get("weights") * (1L << 30) / 6.0;
            assertTrue(w >= one.parameters() / 8.0 && w <= one.parameters() / 8.0 + model(p[1]).layerParameterCount(),
                    p[0] + " fullest GPU holds " + w + " parameters");
            assertEquals(model(p[1]).numLayers(), java.util.Arrays.stream(eight.layersPerDevice()).sum());
            // auto: full fine-tuning places layers (no replica fits one GPU) ...
            assertEquals("layers", eight.parallel());
            assertFalse(klrl.plan.MemoryPlan.plan(full, model(p[1]), 8, 80, true).fits());
            TrainConfig lora = ConfigLoader.load(p[0], Map.of("model.lora.rank", 64, "train.micro_batch_size", 2));
            klrl.plan.MemoryPlan.Plan l = klrl.plan.MemoryPlan.plan(lora, model(p[1]), 1, 80);
            assertTrue(l.fits(), p[0] + " LoRA on one 80 GB GPU: " + l.totalGb() + " " + l.partsGb());
            assertEquals(0.0, l.partsGb().get("reference"));
            assertTrue(l.trainable() < one.parameters() / 20);
            // ... and LoRA runs a replica on each of 8 GPUs, each rolling out an eighth of the batch
            klrl.plan.MemoryPlan.Plan l8 = klrl.plan.MemoryPlan.plan(lora, model(p[1]), 8, 80);
            assertEquals("data", l8.parallel());
            assertTrue(l8.fits() && l8.partsGb().get("weights").equals(l.partsGb().get("weights")), l8.partsGb().toString());
            assertTrue(l8.rolloutChunk() <= l.rolloutChunk());
            // train.parallel: layers forces placement even where a replica fits
            assertEquals("layers", klrl.plan.MemoryPlan.plan(ConfigLoader.load(p[0], Map.of("model.lora.rank", 64,
                    "train.micro_batch_size", 2, "train.parallel", "layers")), model(p[1]), 8, 80).parallel());
        }
    }

    @Test
    void placedLayersReportThePipelinesExpectedBusyFractionAndTheMicroBatchesForPointNine() throws Exception {
        String qwen = TestPaths.model("qwen2.5").resolve("config.json").toString();
        // the preset: 64 prompts × 8 samples per mini-batch in micro-batches of 4 → 128; 8 stages → 128 / 135
        JsonNode o = Json.MAPPER.readTree(CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config", qwen, "--gpus", "8",
                "--json").out());
        assertEquals(128, o.get("micro_batches_per_mini_batch").asInt());
        assertEquals(128.0 / 135, o.get("pipeline_busy").asDouble(), 1e-12);
        assertEquals(63, o.get("micro_batches_for_busy_0_9").asInt()); // 63 / 70 = 0.9, 62 / 69 below
        var few = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config", qwen, "--gpus", "8", "--set",
                "train.micro_batch_size=16");
        assertTrue(few.out().contains("pipeline: 8 stages, 32 micro-batches per mini-batch → expected busy 0.82"), few.out());
        assertTrue(few.out().contains("0.9 takes 63 micro-batches per mini-batch: train.micro_batch_size ≤ 8 (512 rows per mini-batch)"),
                few.out());
        assertTrue(few.out().contains("generation: local decoding over placed layers runs one device at a time"), few.out());
        // in flight: stage s holds the layer inputs of up to S − s micro-batches, so the update's activations grow
        JsonNode seq = Json.MAPPER.readTree(CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config", qwen, "--gpus", "8",
                "--json", "--set", "train.pipeline=false").out());
        assertTrue(o.get("per_gpu_gb").get("activations").asDouble() > seq.get("per_gpu_gb").get("activations").asDouble());
        assertTrue(!seq.has("pipeline_busy"));
        var off = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config", qwen, "--gpus", "8", "--set", "train.pipeline=false");
        assertTrue(off.out().contains("one computing at a time (train.pipeline: false)") && !off.out().contains("expected busy"), off.out());
        // with a token budget micro_batch_size does not cut the rows: the advice names the budget
        var budget = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config", qwen, "--gpus", "8", "--set",
                "train.max_tokens_per_micro_batch=65536");
        assertTrue(budget.out().contains("pipeline: 8 stages, up to 32 micro-batches per mini-batch → expected busy up to 0.82")
                && budget.out().contains("train.max_tokens_per_micro_batch ≤ 32768 when every row is as long as 4096 tokens")
                && !budget.out().contains("train.micro_batch_size ≤"), budget.out());
        var servers = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config", qwen, "--gpus", "8", "--set", "rollout.engine=sglang");
        assertTrue(!servers.out().contains("generation: local decoding"), servers.out());
    }

    @Test
    void withoutCheckpointingAStageHoldsTheWholeActivationsOfItsMicroBatchesInFlight() {
        ModelConfig m = model("qwen2.5");
        for (boolean pipeline : new boolean[] {true, false}) {
            for (int stages : new int[] {2, 8}) {
                TrainConfig on = ConfigLoader.load("qwen2.5-7b-math", Map.of("train.checkpoint_layers", 1, "train.pipeline", pipeline));
                TrainConfig off = ConfigLoader.load("qwen2.5-7b-math", Map.of("train.checkpoint_layers", 0, "train.pipeline", pipeline));
                MemoryPlan.Plan kept = MemoryPlan.plan(on, m, stages, 80, false), whole = MemoryPlan.plan(off, m, stages, 80, false);
                // stage s holds min(S − s, M) micro-batches in flight (one at a time without the pipeline); the fullest
                // holds the most layers' worth
                int[] layers = whole.layersPerDevice();
                int held = 0, inFlight = 0;
                for (int s = 0; s < stages; s++) {
                    int f = pipeline ? Math.min(stages - s, whole.microBatches()) : 1;
                    if (layers[s] * f > held) {
                        held = layers[s] * f;
                        inFlight = f;
                    }
                }
                assertEquals(inFlight, whole.inFlight());
                // a micro-batch: 4 rows of 1,024 + 3,072 positions, fp16, fused attention; a layer's input is [positions, h]
                // and its whole graph 34 + 4 (K and V repeated to the query heads) such tensors (Korthikanti et al.)
                double positions = 4.0 * (1024 + 3072), input = positions * m.hiddenSize() * 2, layer = positions * m.hiddenSize() * 38;
                // checkpointed: the held layers' inputs and one layer recomputed; else every held layer's whole graph
                double expected = held * layer - (held * input + layer);
                double diff = (whole.partsGb().get("activations") - kept.partsGb().get("activations")) * MemoryPlan.GB;
                assertEquals(expected, diff, 1e-9 * expected, "pipeline " + pipeline + ", " + stages + " stages");
            }
        }
        var off = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config", qwenConfig(), "--gpus", "8",
                "--set", "train.checkpoint_layers=0");
        int inFlight = MemoryPlan.plan(ConfigLoader.load("qwen2.5-7b-math", Map.of("train.checkpoint_layers", 0)), m, 8, 80).inFlight();
        assertTrue(inFlight > 1 && off.out().contains("the fullest GPU holds " + inFlight + " micro-batches' whole activations")
                && off.out().contains("because activation checkpointing is off") && off.out().contains("train.checkpoint_layers: 1"),
                off.out());
        var on = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config", qwenConfig(), "--gpus", "8");
        assertFalse(on.out().contains("whole activations"), on.out());
    }

    @Test
    void theBusyEstimateSaysTheFullEstimatorsReferencePassMakesTheLastStageBusier() {
        String note = "the last stage also runs the reference's forward over each micro-batch inside the update";
        for (String[] kl : new String[][] {{"full", "loss"}, {"full", "loss-unbiased"}, {"k3", "loss"}, {"k1", "reward"}}) {
            var r = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config", qwenConfig(), "--gpus", "8",
                    "--set", "kl.estimator=" + kl[0], "--set", "kl.placement=" + kl[1]);
            assertEquals(0, r.code(), r.err());
            assertTrue(r.out().contains("expected busy"), r.out());
            assertEquals(kl[0].equals("full"), r.out().contains(note) && r.out().contains("this estimate is optimistic"), r.out());
        }
        // one group at a time there is no busy estimate to qualify
        var off = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--model-config", qwenConfig(), "--gpus", "8",
                "--set", "kl.estimator=full", "--set", "kl.placement=loss", "--set", "train.pipeline=false");
        assertFalse(off.out().contains(note), off.out());
    }

    @Test
    void autoAttentionIsSizedAsAPassOfTheLongestSequenceRunsIt() throws Exception {
        ModelConfig m = model("qwen2.5");
        int at = klrl.model.Attention.AUTO_MIN_TOKENS;
        java.util.function.BiFunction<String, Integer, Double> act = (mode, seq) -> MemoryPlan.plan(ConfigLoader.load("qwen2.5-7b-math",
                Map.of("model.attention", mode, "data.max_prompt_tokens", seq / 2, "rollout.max_new_tokens", seq - seq / 2)), m, 8, 80)
                .partsGb().get("activations");
        // every pass runs eager: sized as eager
        assertTrue(act.apply("eager", at - 1) > act.apply("sdpa", at - 1));
        assertEquals(act.apply("eager", at - 1), act.apply("auto", at - 1));
        // the longest pass runs sdpa, a pass one position shorter eager: sized for whichever holds more (here the eager
        // pass of 127 + 128 positions, whose scores outweigh what fused attention saves)
        double shorter = MemoryPlan.plan(ConfigLoader.load("qwen2.5-7b-math", Map.of("model.attention", "eager",
                "data.max_prompt_tokens", at / 2 - 1, "rollout.max_new_tokens", at - at / 2)), m, 8, 80).partsGb().get("activations");
        assertEquals(Math.max(act.apply("sdpa", at), shorter), act.apply("auto", at));
        assertTrue(shorter > act.apply("sdpa", at));
        // at 4,096 positions the fused pass holds the most
        assertEquals(act.apply("sdpa", 4096), act.apply("auto", 4096));
        for (int seq : new int[] {at - 1, 4096}) {
            String[] args = {"plan", "--config", "qwen2.5-7b-math", "--model-config", qwenConfig(), "--gpus", "8", "--set",
                "model.attention=auto", "--set", "data.max_prompt_tokens=" + seq / 2, "--set", "rollout.max_new_tokens=" + (seq - seq / 2)};
            var r = CliTest.run(args);
            String runs = seq >= at ? "sdpa" : "eager";
            assertTrue(r.out().contains(String.format(java.util.Locale.ROOT, "attention: auto — sdpa for passes of %,d positions or more,"
                    + " eager below; a pass of the configured maximum, %,d positions", at, seq)) && r.out().contains("), would run " + runs
                    + ": "), r.out());
            var j = CliTest.run(java.util.stream.Stream.concat(java.util.Arrays.stream(args), java.util.stream.Stream.of("--json"))
                    .toArray(String[]::new));
            JsonNode o = Json.MAPPER.readTree(j.out());
            assertEquals("auto", o.get("attention").asText());
            assertEquals(runs, o.get("attention_longest_pass").asText());
        }
    }

    @Test
    void theChunkedOutputHeadDoesNotGrowWithTheResponseLengthTheWholeOneDoes() {
        ModelConfig m = model("qwen2.5"); // Qwen2.5-7B: 152,064 logits a token
        // one row a micro-batch with fused attention: a longer response adds its positions' layer activations and the head's
        java.util.function.BiFunction<Integer, Integer, Double> act = (chunk, response) -> MemoryPlan.plan(ConfigLoader.load(
                "qwen2.5-7b-math", Map.of("model.head_chunk_tokens", chunk, "rollout.max_new_tokens", response,
                        "train.micro_batch_size", 1)), m, 8, 80).partsGb().get("activations") * MemoryPlan.GB;
        int[] lengths = {8192, 16384, 20480};
        for (int i = 1; i < lengths.length; i++) {
            int from = lengths[i - 1], to = lengths[i];
            double vocabRows = (to - from) * (double) m.vocabSize() * 4; // one fp32 [ΔT, vocabulary] tensor
            double chunked = act.apply(1024, to) - act.apply(1024, from), whole = act.apply(0, to) - act.apply(0, from);
            // chunked: the head's [.,V] tensors are one chunk's at any length; what grows is [T, hidden]-sized
            assertTrue(chunked > 0 && chunked < vocabRows, from + " → " + to + " tokens: chunked grows by " + chunked
                    + " bytes, one fp32 [ΔT, V] tensor is " + vocabRows);
            // whole: at least the logits, their log-softmax and gradient over the ΔT more tokens
            assertTrue(whole - chunked >= 3 * vocabRows, from + " → " + to + " tokens: whole grows by " + whole + ", chunked by " + chunked);
        }
        // up to one chunk the head is one piece either way
        assertEquals(act.apply(0, 1024), act.apply(1024, 1024));
        // the DAPO preset's 20,480-token responses fit 8×80 GB by their chunks; the whole head would not
        TrainConfig dapo = ConfigLoader.load("dapo-qwen2.5-7b", Map.of());
        assertEquals(20480, dapo.rollout().maxNewTokens());
        assertTrue(MemoryPlan.plan(dapo, m, 8, 80).fits());
        assertFalse(MemoryPlan.plan(ConfigLoader.load("dapo-qwen2.5-7b", Map.of("model.head_chunk_tokens", 0)), m, 8, 80).fits());
    }

    @Test
    void aRefusalWhoseActivationsAreMostlyEagerScoresSaysWhatSdpaNeeds() {
        ModelConfig m = model("qwen2.5");
        List<ai.djl.Device> gpus = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            gpus.add(ai.djl.Device.gpu(i));
        }
        long memory = 80L << 30;
        // 12k-token responses: eager's scores grow with the square of the sequence, fused attention keeps none
        Map<String, TrainConfig> c = new LinkedHashMap<>();
        for (String mode : List.of("eager", "sdpa")) {
            c.put(mode, ConfigLoader.load("qwen2.5-7b-math", Map.of("model.attention", mode, "rollout.max_new_tokens", 12288,
                    "train.micro_batch_size", 2)));
        }
        MemoryPlan.Plan eager = MemoryPlan.plan(c.get("eager"), m, 8, 80), fused = MemoryPlan.plan(c.get("sdpa"), m, 8, 80);
        assertTrue(!eager.fits() && fused.fits(), eager.totalGb() + " " + fused.totalGb());
        // one layer's scores and probabilities at a time (the others are recomputed): 5·a·s² per row, 16-bit, less the K and V
        // fused attention repeats to the query heads instead (2·s·h)
        double s = 1024 + 12288, scores = 2 * s * m.hiddenSize() * (5.0 * m.numHeads() * s / m.hiddenSize() - 4) * 2 / 2;
        assertEquals(scores / MemoryPlan.GB, eager.partsGb().get("activations") - fused.partsGb().get("activations"), 1e-9);
        UserError e = assertThrows(UserError.class, () -> MemoryPlan.preflight(c.get("eager"), m, gpus, false, memory, 1L << 40));
        assertTrue(e.getMessage().contains("this run needs about") && e.getMessage().contains("the largest part is activations")
                && e.getMessage().contains(String.format(java.util.Locale.ROOT, "eager attention's scores are about %.1f GiB of them"
                + " (model.attention: eager): with model.attention: sdpa the update needs about %.1f GiB (fits)", scores / MemoryPlan.GB,
                MemoryPlan.HELD.stream().mapToDouble(fused.partsGb()::get).sum() + fused.partsGb().get("activations"))), e.getMessage());
        MemoryPlan.preflight(c.get("sdpa"), m, gpus, false, memory, 1L << 40);
        // on the host everything one step holds at once counts
        ModelConfig tiny = klrl.run.TinyDefault.shape();
        Map<String, TrainConfig> cpu = new LinkedHashMap<>();
        for (String mode : List.of("eager", "sdpa")) {
            cpu.put(mode, ConfigLoader.load("tiny-cpu", Map.of("model.attention", mode, "data.max_prompt_tokens", 1024,
                    "rollout.max_new_tokens", 1024)));
        }
        double hostGb = MemoryPlan.hostPlan(cpu.get("sdpa"), tiny, 1, 1e6).totalGb() / 0.9 * 1.5;
        MemoryPlan.Plan onHost = MemoryPlan.hostPlan(cpu.get("sdpa"), tiny, 1, hostGb);
        UserError h = assertThrows(UserError.class, () -> MemoryPlan.preflight(cpu.get("eager"), tiny, List.of(ai.djl.Device.cpu()),
                false, (long) (hostGb * MemoryPlan.GB), 1L << 40));
        assertTrue(h.getMessage().contains("on the host") && h.getMessage().contains(String.format(java.util.Locale.ROOT,
                "with model.attention: sdpa it needs about %.1f GiB (fits)", onHost.totalGb())), h.getMessage());
        // a refusal for something else says nothing of attention: full fine-tuning on one GPU
        TrainConfig one = ConfigLoader.load("qwen2.5-7b-math", Map.of("model.attention", "eager"));
        UserError w = assertThrows(UserError.class, () -> MemoryPlan.preflight(one, m, gpus.subList(0, 1), true, memory, 1L << 40));
        assertFalse(w.getMessage().contains("with model.attention: sdpa"), w.getMessage());
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
        for (String[] p : new String[][] {{"qwen2.5-7b-math", "7615616512"}, {"llama3.1-8b-math", "8030261248"},
                {"dapo-qwen2.5-7b", "7615616512"}, {"gspo-qwen2.5-7b", "7615616512"}}) {
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
        assertTrue(tiny.out().contains("\"layers_per_device\":[3]"), tiny.out());
        // a folder that is neither on disk nor known: one line saying what to pass
        var unknown = CliTest.run("plan", "--config", "qwen2.5-7b-math", "--set", "model.path=/nowhere/MyModel");
        assertEquals(2, unknown.code());
        assertTrue(unknown.err().contains("--model-config") && unknown.err().strip().lines().count() == 1, unknown.err());
    }

    static String qwenConfig() {
        return TestPaths.model("qwen2.5").resolve("config.json").toString();
    }

    /** The command's GB lines ("  weights    5.65 GB"), by name, as printed. */
    static Map<String, String> printedParts(String out) {
        Map<String, String> parts = new LinkedHashMap<>();
        Matcher m = Pattern.compile("(?m)^  (\\w+) +([0-9.]+) GB").matcher(out);
        while (m.find()) {
            parts.put(m.group(1), m.group(2));
        }
        return parts;
    }

    static double sum(String terms) {
        return java.util.Arrays.stream(terms.split(" \\+ ")).mapToDouble(Double::parseDouble).sum();
    }

    @Test
    void thePrintedPartsAddUpToTheTotalAsTheTextSays() throws Exception {
        List<String[]> runs = List.of(
                new String[] {"--config", "qwen2.5-7b-math", "--model-config", qwenConfig(), "--gpus", "8"},
                new String[] {"--config", "qwen2.5-7b-math", "--model-config", qwenConfig(), "--gpus", "8", "--set", "model.lora.rank=64"},
                new String[] {"--config", "qwen2.5-7b-math", "--model-config", qwenConfig(), "--set", "rollout.n=1"},
                new String[] {"--config", "tiny-cpu", "--gpu-memory-gb", "16", "--set", "model.device=cpu,cpu"});
        for (String[] args : runs) {
            List<String> all = new ArrayList<>(List.of("plan"));
            all.addAll(List.of(args));
            var r = CliTest.run(all.toArray(String[]::new));
            assertEquals(0, r.code(), r.err());
            Map<String, String> parts = printedParts(r.out());
            String total = parts.remove("total");
            List<String> lines = r.out().lines().toList();
            int at = lines.indexOf(lines.stream().filter(l -> l.startsWith("  total ")).findFirst().orElseThrow());
            assertTrue(at + 2 < lines.size() && lines.get(at + 1).startsWith("    = ") && lines.get(at + 2).startsWith("    = "), r.out());
            String names = lines.get(at + 1).substring(6), values = lines.get(at + 2).substring(6);
            // every printed part is in the formula once, and the numbers are the printed parts in its places
            String substituted = names;
            for (var e : parts.entrySet()) {
                assertEquals(1, names.split("\\b" + e.getKey() + "\\b", -1).length - 1, e.getKey() + " in " + names);
                substituted = substituted.replaceAll("\\b" + e.getKey() + "\\b", e.getValue());
            }
            assertEquals(substituted, values, r.out());
            // [k × (]held + max(update, rollout)[)] of the printed numbers is the printed total, to their rounding
            Matcher m = Pattern.compile("(?:(\\d+) × \\()?(.+) \\+ max\\(([^,]+), ([^)]+)\\)\\)?").matcher(values);
            assertTrue(m.matches(), values);
            int k = m.group(1) == null ? 1 : Integer.parseInt(m.group(1));
            double formed = k * (sum(m.group(2)) + Math.max(sum(m.group(3)), sum(m.group(4))));
            assertEquals(Double.parseDouble(total), formed, 0.005 * k * (parts.size() + 1), r.out());
            // the update's and the rollout's parts are marked as such
            assertTrue(r.out().lines().anyMatch(l -> l.startsWith("  kv_cache") && l.endsWith("(rollout)"))
                    && r.out().lines().anyMatch(l -> l.startsWith("  activations") && l.endsWith("(update)")), r.out());

            // --json: the total as total_terms forms it from the parts (and total_formula says the same)
            all.add("--json");
            var j = CliTest.run(all.toArray(String[]::new));
            assertEquals(0, j.code(), j.err());
            JsonNode o = Json.MAPPER.readTree(j.out());
            JsonNode gb = o.has("per_gpu_gb") ? o.get("per_gpu_gb") : o.get("host_gb");
            JsonNode terms = o.get("total_terms");
            double held = 0;
            List<String> used = new ArrayList<>();
            for (JsonNode t : terms.get("sum")) {
                held += gb.get(t.asText()).asDouble();
                used.add(t.asText());
            }
            double larger = 0;
            List<String> alternatives = new ArrayList<>();
            for (JsonNode alt : terms.get("plus_max_of")) {
                double a = 0;
                List<String> members = new ArrayList<>();
                for (JsonNode t : alt) {
                    a += gb.get(t.asText()).asDouble();
                    used.add(t.asText());
                    members.add(t.asText());
                }
                larger = Math.max(larger, a);
                alternatives.add(String.join(" + ", members));
            }
            assertEquals(gb.get("total").asDouble(), terms.get("times").asInt() * (held + larger), 1e-9, j.out());
            List<String> keys = new ArrayList<>();
            gb.fieldNames().forEachRemaining(keys::add);
            keys.remove("total");
            assertEquals(keys.stream().sorted().toList(), used.stream().sorted().toList(), j.out());
            List<String> held2 = new ArrayList<>();
            terms.get("sum").forEach(t -> held2.add(t.asText()));
            String formed2 = String.join(" + ", held2) + " + max(" + String.join(", ", alternatives) + ")";
            int times = terms.get("times").asInt();
            assertEquals(times > 1 ? times + " × (" + formed2 + ")" : formed2, o.get("total_formula").asText(), j.out());
            assertEquals(names, o.get("total_formula").asText(), "text and JSON form the total alike");
            assertEquals(parts.keySet().stream().toList(), keys, "text and JSON list the same parts");
        }
    }

    @Test
    void theRolloutChunkIsACountOfSequencesNotGb() throws Exception {
        for (String[] args : new String[][] {{"plan", "--config", "qwen2.5-7b-math", "--model-config", qwenConfig(), "--gpus", "8"},
                {"plan", "--config", "tiny-cpu"}}) {
            var j = CliTest.run(java.util.stream.Stream.concat(java.util.Arrays.stream(args), java.util.stream.Stream.of("--json"))
                    .toArray(String[]::new));
            assertEquals(0, j.code(), j.err());
            JsonNode o = Json.MAPPER.readTree(j.out());
            assertTrue(o.path("rollout_chunk_sequences").isIntegralNumber() && o.get("rollout_chunk_sequences").asLong() >= 1, j.out());
            // the GB map holds the parts and their total only
            JsonNode gb = o.has("per_gpu_gb") ? o.get("per_gpu_gb") : o.get("host_gb");
            gb.fieldNames().forEachRemaining(k -> assertTrue(MemoryPlan.HELD.contains(k) || MemoryPlan.UPDATE.contains(k)
                    || MemoryPlan.ROLLOUT.contains(k) || k.equals("total"), k + " in " + gb));
            var t = CliTest.run(args);
            String line = t.out().lines().filter(l -> l.contains("rollout") && !l.contains("(rollout)") && l.startsWith("  "))
                    .findFirst().orElseThrow();
            assertTrue(line.matches("  rollout chunk +" + String.format("%,d", o.get("rollout_chunk_sequences").asLong()) + " sequences .*")
                    && !line.contains("GB"), t.out());
        }
    }

    @Test
    void aConfigOnCpuIsPlannedAgainstTheHostsMemoryNeverAsAGpu() throws Exception {
        var text = CliTest.run("plan", "--config", "tiny-cpu");
        assertEquals(0, text.code(), text.err());
        assertFalse(text.out().contains("GPU"), text.out());
        assertTrue(text.out().startsWith("parameters 673,408 (trainable 673,408), 1 CPU device, host memory ")
                && text.out().contains(" GB available\n") && text.out().contains("\nhost memory:\n"), text.out());
        // by default the memory this machine has available now (what the trainer's start-up check compares with)
        JsonNode o = Json.MAPPER.readTree(CliTest.run("plan", "--config", "tiny-cpu", "--json").out());
        double available = MemoryPlan.hostAvailableBytes() / MemoryPlan.GB;
        assertEquals("cpu", o.get("device").asText());
        assertEquals(1, o.get("cpu_devices").asInt());
        assertFalse(o.has("gpus") || o.has("gpu_memory_gb") || o.has("per_gpu_gb") || o.has("layers_per_gpu"), o.toString());
        assertEquals(available, o.get("host_memory_gb").asDouble(), 0.25 * available, o.toString());
        // --gpu-memory-gb gives the host's memory instead, and the verdict follows it
        double total = o.get("host_gb").get("total").asDouble();
        for (double gb : new double[] {total / 0.9 * 0.98, total / 0.9 * 1.02}) {
            var r = CliTest.run("plan", "--config", "tiny-cpu", "--gpu-memory-gb", Double.toString(gb));
            assertTrue(r.out().contains(String.format(java.util.Locale.ROOT, "host memory %.1f GB (--gpu-memory-gb)", gb))
                    && r.out().contains(gb > total / 0.9 ? "→ fits" : "→ does NOT fit (90% of the host's memory)"), r.out());
            // ... as the trainer's start-up check finds against that much memory
            TrainConfig c = ConfigLoader.load("tiny-cpu", Map.of());
            Runnable start = () -> MemoryPlan.preflight(c, klrl.run.TinyDefault.shape(), List.of(ai.djl.Device.cpu()), false,
                    (long) (gb * MemoryPlan.GB), 1L << 32);
            if (gb > total / 0.9) {
                start.run();
            } else {
                UserError e = assertThrows(UserError.class, start::run);
                assertTrue(e.getMessage().contains("on the host"), e.getMessage());
            }
        }
        // CPU replicas (model.device: cpu,cpu) are all in the host's memory
        JsonNode two = Json.MAPPER.readTree(CliTest.run("plan", "--config", "tiny-cpu", "--gpu-memory-gb", "16",
                "--set", "model.device=cpu,cpu", "--json").out());
        assertEquals("data", two.get("parallel").asText());
        assertEquals(2, two.get("total_terms").get("times").asInt());
        assertTrue(two.get("host_gb").get("total").asDouble() > total, two.toString());
        // --gpus does not apply to a config on CPU: one line saying what to set instead
        var gpus = CliTest.run("plan", "--config", "tiny-cpu", "--gpus", "2");
        assertEquals(2, gpus.code());
        assertTrue(gpus.err().contains("model.device=cuda") && gpus.err().strip().lines().count() == 1, gpus.err());
        // and the same model on GPUs is planned as GPUs
        var cuda = CliTest.run("plan", "--config", "tiny-cpu", "--set", "model.device=cuda");
        assertTrue(cuda.out().contains("1 GPU of 80 GB") && cuda.out().contains("per GPU"), cuda.out());
    }

    @Test
    void theMemoryAndJsonOptionsSayWhatTheyDo() {
        var r = CliTest.run("plan", "--help");
        assertEquals(0, r.code(), r.err());
        String help = r.out().replaceAll("\\s+", " ");
        assertTrue(help.contains("--gpu-memory-gb=GB memory of each GPU in GB (default: 80); for a config on CPU")
                && help.contains("--json print the plan as one JSON object"), r.out());
    }
}
