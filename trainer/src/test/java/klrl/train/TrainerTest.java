package klrl.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import klrl.cli.Main;
import klrl.config.ConfigLoader;
import klrl.config.TrainConfig;
import klrl.model.Decoder;
import klrl.model.SafeTensors;
import klrl.run.TinyDefault;
import klrl.util.Json;
import klrl.util.UserError;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The training loop end to end on the built-in tiny model: real rollouts, rewards, updates, checkpoints. */
@Tag("e2e") // whole runs and subprocesses: after the unit tests
class TrainerTest {
    @TempDir Path tmp;
    static Path base;

    @BeforeAll
    static void model() throws Exception {
        base = TinyDefault.ensure(s -> { });
    }

    static TrainConfig small(Path out, Map<String, Object> extra) {
        Map<String, Object> o = new HashMap<>();
        o.put("output_dir", out.toString());
        o.put("model.path", base.toString());
        o.put("train.max_steps", 4);
        o.put("train.batch_size", 4);
        o.put("train.mini_batch_size", 2);
        o.put("train.micro_batch_size", 5);
        o.put("rollout.n", 4);
        o.put("eval.every", 0);
        o.put("eval.before_start", false);
        o.put("eval.max_examples", 16);
        o.put("eval.k", 2);
        o.put("checkpoint.every", 2);
        // resume tests compare a run cut short (fewer max_steps) with a whole one: a cosine schedule depends on max_steps
        o.put("optim.schedule", "constant");
        o.putAll(extra);
        return ConfigLoader.load(null, o);
    }

    /** A checkpoint's trained tensors as fp32 values by name: LoRA's adapters, or every weight. */
    static Map<String, float[]> savedWeights(Path checkpoint) throws Exception {
        Map<String, float[]> w = new java.util.LinkedHashMap<>();
        try (ai.djl.ndarray.NDManager m = ai.djl.ndarray.NDManager.newBaseManager("PyTorch")) {
            Path adapters = checkpoint.resolve("adapter_model.safetensors");
            (Files.exists(adapters) ? klrl.model.SafeTensors.readHeader(adapters) : klrl.model.SafeTensors.index(checkpoint))
                    .forEach((k, e) -> w.put(k, klrl.model.SafeTensors.load(e, m, ai.djl.ndarray.types.DataType.FLOAT32).toFloatArray()));
        }
        return w;
    }

    static List<JsonNode> metrics(Path run) throws Exception {
        List<JsonNode> out = new ArrayList<>();
        for (String l : Files.readAllLines(run.resolve("metrics.jsonl"))) {
            out.add(Json.MAPPER.readTree(l));
        }
        return out;
    }

    static List<JsonNode> stepLines(Path run) throws Exception {
        return metrics(run).stream().filter(n -> n.has("reward_mean")).toList();
    }

    static void train(TrainConfig c, Path resume) throws Exception {
        try (Trainer t = new Trainer(c, resume, s -> { })) {
            t.run(s -> { });
        }
    }

    /** Every metric but wall-clock ones and the process's resident memory. */
    static Map<String, String> comparable(JsonNode n) {
        Map<String, String> m = new HashMap<>();
        n.fields().forEachRemaining(e -> {
            if (!e.getKey().startsWith("time") && !e.getKey().equals("tokens_per_s") && !e.getKey().equals("rss_mb")) {
                m.put(e.getKey(), e.getValue().toString());
            }
        });
        return m;
    }

    @Test
    void resumeContinuesExactlyLikeAnUninterruptedRun() throws Exception {
        Path a = tmp.resolve("a"), b = tmp.resolve("b");
        train(small(a, Map.of()), null);
        train(small(b, Map.of("train.max_steps", 2)), null);
        train(small(b, Map.of()), b);
        List<JsonNode> ma = stepLines(a), mb = stepLines(b);
        assertEquals(4, ma.size());
        assertEquals(4, mb.size());
        for (int i = 0; i < 4; i++) {
            assertEquals(comparable(ma.get(i)), comparable(mb.get(i)), "step " + (i + 1));
        }
        // checkpoints: atomic folders, latest pointer, nothing half-written left behind
        assertEquals("step-000004", Files.readString(b.resolve("checkpoints/latest")).strip());
        try (var s = Files.list(b.resolve("checkpoints"))) {
            assertTrue(s.noneMatch(p -> p.toString().endsWith(".tmp")));
        }
        for (String f : new String[] {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "config.json", "tokenizer.json"}) {
            assertTrue(Files.isRegularFile(b.resolve("checkpoints/step-000004/" + f)), f);
        }
    }

    @Test
    void activationCheckpointingAndLayerPlacementTrainLikeThePlainPath() throws Exception {
        // One step of four updates (two epochs over two mini-batches) on the same rollout: the variants compute
        // with other libtorch thread counts (a pipeline stage gets cores ÷ stages), which round otherwise, so a
        // second step's sampling would hang on rounding; the first rollout comes from the same initial weights.
        Map<String, Object> oneStep = Map.of("train.max_steps", 1, "algorithm.ppo_epochs", 2, "checkpoint.every", 1);
        Path plain = tmp.resolve("plain");
        train(small(plain, oneStep), null);
        Map<String, float[]> plainWeights = savedWeights(plain.resolve("checkpoints/step-000001"));
        // checkpointing; layers over 3 CPU "devices" (the staged hand-off GPUs use); both at once
        List<Map<String, Object>> variants = List.of(Map.of("train.checkpoint_layers", 1),
                Map.of("model.device", "cpu,cpu,cpu", "train.parallel", "layers"),
                Map.of("model.device", "cpu,cpu", "train.parallel", "layers", "train.checkpoint_layers", 1));
        for (Map<String, Object> variant : variants) {
            Path run = tmp.resolve("variant" + variants.indexOf(variant));
            train(small(run, merge(oneStep, variant)), null);
            assertSameStepAndWeights(plain, plainWeights, run, variant.toString());
        }
    }

    /** Step 1's metrics within 1e-4 relative, and the weights it saved within 1e-5 relative (‖a − b‖ / ‖a‖). */
    static void assertSameStepAndWeights(Path want, Map<String, float[]> wantWeights, Path got, String what) throws Exception {
        JsonNode a = stepLines(want).get(0), b = stepLines(got).get(0);
        for (String k : new String[] {"reward_mean", "loss_total", "grad_norm", "entropy", "kl_k1"}) {
            assertEquals(a.get(k).asDouble(), b.get(k).asDouble(), 1e-4 * Math.max(1, Math.abs(a.get(k).asDouble())), what + " " + k);
        }
        Map<String, float[]> w = savedWeights(got.resolve("checkpoints/step-000001"));
        assertEquals(wantWeights.keySet(), w.keySet(), what);
        double diff = 0, norm = 0;
        for (var e : wantWeights.entrySet()) {
            float[] x = e.getValue(), y = w.get(e.getKey());
            for (int i = 0; i < x.length; i++) {
                diff += (double) (x[i] - y[i]) * (x[i] - y[i]);
                norm += (double) x[i] * x[i];
            }
        }
        assertTrue(Math.sqrt(diff) <= 1e-5 * Math.sqrt(norm), what + ": weights differ by " + Math.sqrt(diff / norm) + " relative");
    }

    @Test
    void loraWithLayerPlacementTrainsLikeLoraOnOneDeviceAndResumes() throws Exception {
        Map<String, Object> lora = Map.of("train.max_steps", 2, "model.lora.rank", 4);
        // one step of four updates on one rollout, as in the test above: no sampling hangs on rounding
        Map<String, Object> oneStep = merge(lora, Map.of("train.max_steps", 1, "algorithm.ppo_epochs", 2, "checkpoint.every", 1));
        Path plain = tmp.resolve("lora");
        train(small(plain, oneStep), null);
        Map<String, float[]> plainWeights = savedWeights(plain.resolve("checkpoints/step-000001"));
        // LoRA freezes the embedding: the staged backward stops at the first layer's input
        List<Map<String, Object>> variants = List.of(Map.of("model.device", "cpu,cpu", "train.parallel", "layers"),
                Map.of("model.device", "cpu,cpu", "train.parallel", "layers", "train.checkpoint_layers", 1),
                Map.of("train.checkpoint_layers", 1));
        for (Map<String, Object> variant : variants) {
            Path run = tmp.resolve("lora-variant" + variants.indexOf(variant));
            train(small(run, merge(oneStep, variant)), null);
            assertSameStepAndWeights(plain, plainWeights, run, "LoRA " + variant);
        }
        // LoRA over two devices in fp16 trains, and resumes from its checkpoint
        Path fp16 = tmp.resolve("lora-layers-fp16");
        Map<String, Object> o = merge(lora, merge(variants.get(0), Map.of("model.dtype", "float16")));
        train(small(fp16, o), null);
        train(small(fp16, merge(o, Map.of("train.max_steps", 3))), fp16);
        assertEquals(3, stepLines(fp16).size());
        stepLines(fp16).forEach(s -> assertTrue(Double.isFinite(s.get("loss_total").asDouble()), s.toString()));
    }

    @Test
    void float16TrainingUsesMasterWeightsAndLossScaling() throws Exception {
        Path run = tmp.resolve("fp16");
        train(small(run, Map.of("train.max_steps", 2, "model.dtype", "float16", "train.mini_batch_size", 4)), null);
        for (JsonNode s : stepLines(run)) {
            assertTrue(s.has("loss_scale") && Double.isFinite(s.get("loss_total").asDouble()), s.toString());
        }
        assertTrue(SafeTensors.readHeader(run.resolve("checkpoints/step-000002/optimizer.safetensors")).keySet()
                .contains("master.model.norm.weight"));
    }

    @Test
    void metricsHaveEveryDocumentedField() throws Exception {
        Path a = tmp.resolve("m");
        train(small(a, Map.of("train.max_steps", 1, "eval.before_start", true, "train.mini_batch_size", 4,
                "train.samples_every", 1)), null);
        JsonNode step = stepLines(a).get(0);
        for (String k : new String[] {"step", "reward_mean", "accuracy", "kl_k1", "kl_k3", "kl_forward", "kl_coef", "entropy",
            "response_length", "clip_fraction", "grad_norm", "lr", "tokens_per_s", "time_rollout", "time_reward",
            "time_reference", "time_update", "time_step", "skipped_updates", "reward_std", "zero_variance_groups",
            "truncated_fraction", "response_length_min", "response_length_max"}) {
            assertTrue(step.has(k), "missing " + k);
        }
        assertTrue(step.get("response_length_min").asDouble() <= step.get("response_length").asDouble()
                && step.get("response_length").asDouble() <= step.get("response_length_max").asDouble(), step.toString());
        double zv = step.get("zero_variance_groups").asDouble();
        assertTrue(zv >= 0 && zv <= 1 && zv * 4 == Math.rint(zv * 4), step.toString()); // 4 prompt groups
        // samples.jsonl: the first 2 prompts' 4 samples each, with what the verifier made of them
        List<String> samples = Files.readAllLines(a.resolve("samples.jsonl"));
        assertEquals(8, samples.size());
        JsonNode s0 = Json.MAPPER.readTree(samples.get(0));
        for (String k : new String[] {"step", "prompt", "response", "reward", "correct", "extracted", "gold", "finish_reason"}) {
            assertTrue(s0.has(k), "samples.jsonl lacks " + k);
        }
        // TensorBoard: valid TFRecord framing, the step's scalars equal to metrics.jsonl's (as float)
        Map<String, Float> tb = new java.util.HashMap<>();
        try (var files = Files.list(a)) {
            Path ev = files.filter(p -> p.getFileName().toString().startsWith("events.out.tfevents.")).findFirst().orElseThrow();
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(Files.readAllBytes(ev)).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            while (b.hasRemaining()) {
                byte[] len = new byte[8];
                b.get(len);
                assertEquals(klrl.metrics.TensorBoardLog.maskedCrc(len, 8), b.getInt());
                byte[] data = new byte[(int) java.nio.ByteBuffer.wrap(len).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong()];
                b.get(data);
                assertEquals(klrl.metrics.TensorBoardLog.maskedCrc(data, data.length), b.getInt());
                var e = klrl.metrics.tensorboard.Event.parseFrom(data);
                if (e.hasSummary() && e.getStep() == 1) {
                    e.getSummary().getValueList().forEach(v -> tb.put(v.getTag(), v.getSimpleValue()));
                }
            }
        }
        assertEquals((float) step.get("reward_mean").asDouble(), tb.get("reward_mean"));
        assertEquals((float) step.get("kl_k1").asDouble(), tb.get("kl_k1"));
        assertTrue(tb.containsKey("eval_accuracy/arith-test"), tb.keySet().toString());
        JsonNode eval = metrics(a).stream().filter(n -> n.has("eval_accuracy")).findFirst().orElseThrow();
        assertTrue(eval.has("eval_set") && eval.has("eval_mean_at_k"));
        // pass@1…k from the same samples: pass@1 is mean@k, pass@k can only grow with k; maj@k beside them
        int k = eval.get("eval_k").asInt();
        assertEquals(k, eval.get("eval_pass_at").size(), eval.toString());
        assertEquals(eval.get("eval_mean_at_k").asDouble(), eval.get("eval_pass_at").get("1").asDouble(), 1e-12);
        for (int j = 2; j <= k; j++) {
            assertTrue(eval.get("eval_pass_at").get(Integer.toString(j)).asDouble() >= eval.get("eval_pass_at").get(Integer.toString(j - 1)).asDouble());
        }
        assertTrue(eval.get("eval_maj_at_k").isNumber() && eval.get("eval_se").get("eval_accuracy").isNumber(), eval.toString());
        // on-policy: the update's first forward reproduces the sampler's log-probs
        assertTrue(Math.abs(step.get("ppo_kl").asDouble()) < 1e-3, step.toString());
    }

    @ParameterizedTest
    @ValueSource(strings = {"grpo", "ppo-lora-fp16", "grpo-data-parallel", "grpo-rollout-copy", "ppo-layers-pipelined"})
    void nativeMemoryStaysFlat(String setting) throws Exception {
        // every step's tensors belong to scopes that close with it: after the first steps (lazy AdamW
        // moments, KL state) the arrays alive under the trainer's manager do not grow
        Path a = tmp.resolve(setting);
        Map<String, Object> o = new HashMap<>(Map.of("train.max_steps", 10, "checkpoint.every", 0));
        if (setting.equals("ppo-lora-fp16")) {
            o.putAll(Map.of("algorithm.name", "ppo", "model.lora.rank", 4, "model.dtype", "float16", "kl.placement", "loss",
                    "kl.estimator", "k3", "kl.coef", 0.1));
        } else if (setting.equals("grpo-data-parallel")) { // live_arrays counts every replica's
            o.putAll(Map.of("model.device", "cpu,cpu", "train.parallel", "data", "train.micro_batch_size", 2));
        } else if (setting.equals("grpo-rollout-copy")) { // and the copy of the policy that generates on rollout.devices
            o.putAll(Map.of("rollout.devices", "cpu"));
        } else if (setting.equals("ppo-layers-pipelined")) { // micro-batch managers closed by the pipeline's stage threads
            o.putAll(Map.of("algorithm.name", "ppo", "model.device", "cpu,cpu,cpu", "train.parallel", "layers", "train.micro_batch_size", 2,
                    "train.checkpoint_layers", 1));
        }
        train(small(a, o), null);
        List<JsonNode> steps = stepLines(a);
        long after3 = steps.get(2).get("live_arrays").asLong();
        for (JsonNode s : steps.subList(3, steps.size())) {
            assertEquals(after3, s.get("live_arrays").asLong(), s.toString());
        }
        assertTrue(after3 > 0 && steps.get(9).get("rss_mb").asLong() > 0, steps.get(9).toString());
        if (setting.equals("grpo-rollout-copy")) { // the copy's tensors are watched too: more than the trainer's own
            Path plain = tmp.resolve("plain");
            train(small(plain, Map.of("train.max_steps", 3, "checkpoint.every", 0)), null);
            assertTrue(after3 > stepLines(plain).get(2).get("live_arrays").asLong(), after3 + " " + stepLines(plain).get(2));
        }
        System.out.println(setting + ": live arrays " + after3 + ", rss " + steps.get(2).get("rss_mb") + " -> "
                + steps.get(9).get("rss_mb") + " MiB");
    }

    @Test
    void klPlacementsReachTheLoss() throws Exception {
        Path r = tmp.resolve("r"), l = tmp.resolve("l"), u = tmp.resolve("u");
        train(small(r, Map.of("train.max_steps", 1, "kl.placement", "reward")), null);
        train(small(l, Map.of("train.max_steps", 1, "kl.placement", "loss", "kl.estimator", "k3", "kl.coef", 0.1)), null);
        train(small(u, Map.of("train.max_steps", 1, "kl.placement", "loss-unbiased", "kl.estimator", "k3", "kl.coef", 0.1)), null);
        assertFalse(stepLines(r).get(0).has("loss_kl"));
        assertTrue(stepLines(l).get(0).has("loss_kl"));
        assertTrue(stepLines(u).get(0).has("loss_kl"));
    }

    @Test
    void exportWritesALoadableModelFolder() throws Exception {
        Path run = tmp.resolve("x"), out = tmp.resolve("exported");
        train(small(run, Map.of("train.max_steps", 2, "optim.lr", 1e-3)), null);
        assertEquals(0, Main.run("export", "--checkpoint", run.toString(), "--out", out.toString()));
        long[] ids = {5, 17, 33, 64};
        float[] exported = logits(out, ids), checkpoint = logits(run.resolve("checkpoints/step-000002"), ids), before = logits(base, ids);
        assertArrayEquals(checkpoint, exported);
        assertFalse(java.util.Arrays.equals(before, exported), "training changed nothing");
    }

    static float[] logits(Path dir, long[] ids) {
        try (NDManager m = NDManager.newBaseManager("PyTorch"); Decoder d = Decoder.load(dir, m, DataType.FLOAT32)) {
            return d.logits(m, ids).toFloatArray();
        }
    }

    @Test
    void loraTrainsOnlyAdaptersAndExportMergesThem() throws Exception {
        Path run = tmp.resolve("lora"), out = tmp.resolve("merged");
        train(small(run, Map.of("train.max_steps", 2, "model.lora.rank", 4, "optim.lr", 5e-3)), null);
        Path ck = run.resolve("checkpoints/step-000002");
        assertTrue(Files.isRegularFile(ck.resolve("adapter_model.safetensors")));
        assertTrue(Files.isRegularFile(ck.resolve("adapter_config.json")));
        assertFalse(Files.exists(ck.resolve("model.safetensors")), "LoRA checkpoints hold adapters only");
        var adapters = SafeTensors.readHeader(ck.resolve("adapter_model.safetensors")).keySet();
        assertTrue(adapters.contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), adapters.toString());
        assertEquals(0, Main.run("export", "--checkpoint", run.toString(), "--out", out.toString()));
        long[] ids = {5, 17, 33, 64};
        assertFalse(java.util.Arrays.equals(logits(base, ids), logits(out, ids)), "merged adapters changed nothing");
    }

    @Test
    void ppoTrainsAValueHead() throws Exception {
        Path run = tmp.resolve("ppo");
        train(small(run, Map.of("train.max_steps", 2, "algorithm.name", "ppo", "algorithm.ppo_epochs", 2)), null);
        JsonNode s = stepLines(run).get(1);
        assertTrue(s.has("loss_value") && s.has("value_clip_fraction"), s.toString());
        assertTrue(Files.isRegularFile(run.resolve("checkpoints/step-000002/value_head.safetensors")));
    }

    @Test
    void ppoWithASeparateCriticResumesExactly() throws Exception {
        Map<String, Object> ppo = Map.of("algorithm.name", "ppo", "model.critic", "separate");
        Path a = tmp.resolve("sa"), b = tmp.resolve("sb");
        train(small(a, merge(ppo, Map.of("train.max_steps", 3))), null);
        train(small(b, merge(ppo, Map.of("train.max_steps", 2))), null);
        train(small(b, merge(ppo, Map.of("train.max_steps", 3))), b);
        assertEquals(comparable(stepLines(a).get(2)), comparable(stepLines(b).get(2)));
        var saved = SafeTensors.readHeader(a.resolve("checkpoints/step-000003/value_head.safetensors")).keySet();
        assertTrue(saved.contains("critic.model.norm.weight") && saved.contains("value_head.weight"), saved.toString());
    }

    @Test
    void offPolicyLagTrainsOnOlderRollouts() throws Exception {
        Path run = tmp.resolve("lag");
        train(small(run, Map.of("train.max_steps", 4, "algorithm.off_policy_lag", 2, "train.mini_batch_size", 4)), null);
        List<JsonNode> s = stepLines(run);
        // the first K steps only fill the queue; later updates use rollouts from 2 policy versions ago
        assertFalse(s.get(0).has("grad_norm"));
        assertFalse(s.get(1).has("grad_norm"));
        assertTrue(s.get(2).has("grad_norm"));
        // step 4 trains on step 2's rollout, sampled before the first update: old ≠ current policy now
        assertTrue(Math.abs(s.get(3).get("ppo_kl").asDouble()) > 1e-6, s.get(3).toString());
    }

    @Test
    void reportDrawsPngs() throws Exception {
        Path run = tmp.resolve("rep"), out = tmp.resolve("plots");
        train(small(run, Map.of("train.max_steps", 2, "eval.before_start", true)), null);
        assertEquals(0, Main.run("report", run.toString(), run.toString(), "--out", out.toString()));
        for (String f : new String[] {"reward.png", "accuracy.png", "kl.png", "entropy.png", "length.png"}) {
            byte[] png = Files.readAllBytes(out.resolve(f));
            assertTrue(png.length > 1000 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G', f);
        }
    }

    static Map<String, Object> merge(Map<String, Object> a, Map<String, Object> b) {
        Map<String, Object> m = new HashMap<>(a);
        m.putAll(b);
        return m;
    }

    @Test
    void otherAlgorithmsRun() throws Exception {
        for (String algo : new String[] {"rloo", "reinforce++"}) {
            Path run = tmp.resolve(algo.replace("+", "p"));
            train(small(run, Map.of("train.max_steps", 1, "algorithm.name", algo, "kl.estimator", "full", "kl.placement", "loss")), null);
            assertTrue(Double.isFinite(stepLines(run).get(0).get("loss_total").asDouble()));
        }
        // the exact per-token KL shaping the reward, until the policy has moved from the reference (a step
        // whose groups all got equal rewards has zero advantages and leaves it where it was)
        Path full = tmp.resolve("full-reward");
        train(small(full, Map.of("train.max_steps", 4, "kl.estimator", "full", "kl.placement", "reward", "kl.coef", 0.5,
                "optim.lr", 1e-3)), null);
        List<JsonNode> steps = stepLines(full);
        assertTrue(steps.stream().allMatch(s -> Double.isFinite(s.get("loss_total").asDouble())), steps.toString());
        assertTrue(steps.stream().anyMatch(s -> s.get("kl_k3").asDouble() > 0), steps.toString());
    }

    @Test
    void stopRequestCheckpointsAfterTheCurrentStep() throws Exception {
        Path run = tmp.resolve("stop");
        try (Trainer t = new Trainer(small(run, Map.of("train.max_steps", 10, "checkpoint.every", 0)), null, s -> { })) {
            t.run(line -> {
                if (line.startsWith("step 1/")) {
                    t.requestStop(); // what SIGTERM does
                }
            });
        }
        assertEquals(1, stepLines(run).size());
        assertEquals("step-000001", Files.readString(run.resolve("checkpoints/latest")).strip());
    }

    /** The tiny model with one NaN weight: every loss it gives is NaN. */
    Path nanModel() throws Exception {
        Path bad = tmp.resolve("nan-model");
        Files.createDirectories(bad);
        for (String f : new String[] {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}) {
            Files.copy(base.resolve(f), bad.resolve(f));
        }
        try (NDManager m = NDManager.newBaseManager("PyTorch")) {
            Map<String, NDArray> w = new java.util.LinkedHashMap<>();
            SafeTensors.index(base).forEach((k, e) -> w.put(k, SafeTensors.load(e, m, DataType.FLOAT32)));
            float[] norm = w.get("model.norm.weight").toFloatArray();
            norm[3] = Float.NaN;
            w.put("model.norm.weight", m.create(norm));
            SafeTensors.write(bad, w, "F32", Long.MAX_VALUE);
        }
        return bad;
    }

    @Test
    void nonFiniteUpdatesAreSkippedAndStopTheRunBeforeCheckpointing() throws Exception {
        // two updates a step, each skipped; the third in a row stops the run in step 2, before its checkpoint
        Path run = tmp.resolve("nan");
        UserError e = assertThrows(UserError.class, () -> train(small(run, Map.of("model.path", nanModel().toString(),
                "train.max_skipped_updates", 3)), null));
        assertTrue(e.getMessage().contains("3 updates in a row skipped at step 2") && e.getMessage().contains("NaN")
                && e.getMessage().contains("latest checkpoint is the last good one"), e.getMessage());
        List<JsonNode> steps = stepLines(run);
        assertEquals(1, steps.size());
        assertEquals(2, steps.get(0).get("skipped_updates").asInt());
        assertFalse(Files.exists(run.resolve("checkpoints/latest")));
    }

    @Test
    void badDataRowsAreNamed() throws Exception {
        Path data = tmp.resolve("bad.jsonl");
        Files.writeString(data, "{\"question\":\"1+1\",\"answer\":\"2\"}\n{\"q\":\"x\"}\n");
        UserError e = assertThrows(UserError.class, () -> train(small(tmp.resolve("d"), Map.of("data.train", data.toString())), null));
        assertTrue(e.getMessage().contains("bad.jsonl:2") && e.getMessage().contains("question"), e.getMessage());
    }

    @Test
    void theDefaultRunLearns() throws Exception {
        // the README run, shortened to 100 of its 400 steps: accuracy of the 6,400 samples of the
        // last 25 steps against the first 25 (each window's standard error is about 0.005)
        Path run = tmp.resolve("learn");
        train(ConfigLoader.load(null, Map.of("output_dir", run.toString(), "train.max_steps", 100, "eval.every", 0,
                "eval.before_start", false, "eval.k", 0, "eval.max_examples", 50)), null);
        List<JsonNode> s = stepLines(run);
        double first = s.subList(0, 25).stream().mapToDouble(n -> n.get("accuracy").asDouble()).average().orElseThrow();
        double last = s.subList(75, 100).stream().mapToDouble(n -> n.get("accuracy").asDouble()).average().orElseThrow();
        assertTrue(last > first + 0.02, "accuracy " + first + " → " + last);
        assertEquals(0.0, s.get(0).get("kl_k1").asDouble(), 1e-6, "the first rollout is the reference policy");
        assertNotEquals(0.0, s.get(99).get("kl_k1").asDouble());
    }
}
