package klrl.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import klrl.TestPaths;
import klrl.cli.InProcess.Result;
import klrl.util.Json;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The commands as users and acceptance checks call them, in-process. */
@Tag("e2e") // whole runs and subprocesses: after the unit tests
class CliTest {
    @TempDir Path tmp;

    static Result run(String... args) {
        return InProcess.run(args);
    }

    @Test
    void initTinyThenLogprobsWithNpy() throws Exception {
        Path model = tmp.resolve("m");
        assertEquals(0, run("init-tiny", "--arch", "llama", "--out", model.toString(), "--seed", "4").code());
        for (String f : new String[] {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
            assertTrue(Files.isRegularFile(model.resolve(f)), f);
        }
        Path npy = tmp.resolve("l.npy");
        Result r = run("logprobs", "--model", model.toString(), "--input-ids", "5,17,33", "--logits-out", npy.toString());
        assertEquals(0, r.code(), r.err());
        JsonNode j = Json.MAPPER.readTree(r.out());
        assertTrue(j.get("logprobs").get(0).isNull());
        double lp1 = j.get("logprobs").get(1).asDouble();
        assertTrue(lp1 < 0 && lp1 > -20);
        // the .npy holds [3, vocab] float32 whose log-softmax row 0 at id 17 is the printed value
        byte[] b = Files.readAllBytes(npy);
        int hlen = ByteBuffer.wrap(b, 8, 2).order(ByteOrder.LITTLE_ENDIAN).getShort();
        String header = new String(b, 10, hlen, StandardCharsets.US_ASCII);
        int vocab = Json.read(model.resolve("config.json")).get("vocab_size").asInt();
        assertTrue(header.contains("'shape': (3, " + vocab + ")"), header);
        assertEquals(0, (10 + hlen) % 64);
        ByteBuffer data = ByteBuffer.wrap(b, 10 + hlen, b.length - 10 - hlen).order(ByteOrder.LITTLE_ENDIAN);
        double max = Double.NEGATIVE_INFINITY;
        float[] row = new float[vocab];
        for (int i = 0; i < vocab; i++) {
            row[i] = data.getFloat();
            max = Math.max(max, row[i]);
        }
        double z = 0;
        for (float f : row) {
            z += Math.exp(f - max);
        }
        assertEquals(lp1, row[17] - max - Math.log(z), 1e-4);
        // the head in chunks of 2 positions (the last one partial): the same log-probs and the same .npy, written chunk by chunk
        Path chunked = tmp.resolve("c.npy");
        String ids = "5,17,33,2,9";
        Result whole = run("logprobs", "--model", model.toString(), "--input-ids", ids, "--logits-out", npy.toString(),
                "--head-chunk-tokens", "0");
        Result parts = run("logprobs", "--model", model.toString(), "--input-ids", ids, "--logits-out", chunked.toString(),
                "--head-chunk-tokens", "2");
        assertEquals(0, parts.code(), parts.err());
        JsonNode a = Json.MAPPER.readTree(whole.out()).get("logprobs"), c = Json.MAPPER.readTree(parts.out()).get("logprobs");
        assertEquals(5, c.size());
        for (int i = 1; i < 5; i++) {
            assertEquals(a.get(i).asDouble(), c.get(i).asDouble(), 1e-6 * Math.abs(a.get(i).asDouble()), "position " + i);
        }
        byte[] wb = Files.readAllBytes(npy), cb = Files.readAllBytes(chunked);
        assertEquals(wb.length, cb.length);
        ByteBuffer wf = ByteBuffer.wrap(wb, 10 + hlen, wb.length - 10 - hlen).order(ByteOrder.LITTLE_ENDIAN),
                cf = ByteBuffer.wrap(cb, 10 + hlen, cb.length - 10 - hlen).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < 5 * vocab; i++) {
            float x = wf.getFloat(), y = cf.getFloat();
            assertEquals(x, y, 1e-5 * Math.max(1, Math.abs(x)), "logit " + i);
        }
        assertFalse(Files.exists(tmp.resolve("c.npy.tmp")));
        Result bad = run("logprobs", "--model", model.toString(), "--input-ids", ids, "--head-chunk-tokens", "-1");
        assertEquals(1, bad.err().strip().lines().count(), bad.err());
        assertTrue(bad.code() != 0 && bad.err().contains("--head-chunk-tokens"), bad.err());
    }

    @Test
    void templateCommandPrintsTheRenderedPrompt() throws Exception {
        Path msgs = tmp.resolve("m.json");
        Files.writeString(msgs, "[{\"role\":\"user\",\"content\":\"What is 2+3?\"}]");
        Result r = run("template", "--model", TestPaths.model("qwen2.5").toString(), "--messages", msgs.toString());
        assertEquals(0, r.code(), r.err());
        assertEquals("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                + "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n", r.out());
        Result r2 = run("template", "--model", TestPaths.model("qwen2.5").toString(), "--messages", msgs.toString(), "--no-generation-prompt");
        assertTrue(r2.out().endsWith("What is 2+3?<|im_end|>\n"));
    }

    @Test
    void generateJsonIsGreedyAndReproducible() throws Exception {
        String model = TestPaths.fixture("qwen2-bf16-sharded").toString();
        Result a = run("generate", "--model", model, "--input-ids", "5,17,33", "--max-new-tokens", "5", "--json");
        assertEquals(0, a.code(), a.err());
        JsonNode j = Json.MAPPER.readTree(a.out());
        assertEquals(5, j.get("samples").get(0).get("token_ids").size());
        assertTrue(j.get("samples").get(0).has("text"));
        Result b = run("generate", "--model", model, "--prompt", "What is 2+3?", "--chat", "--max-new-tokens", "4",
                "--temperature", "1", "--num-samples", "3", "--seed", "9", "--json");
        Result c = run("generate", "--model", model, "--prompt", "What is 2+3?", "--chat", "--max-new-tokens", "4",
                "--temperature", "1", "--num-samples", "3", "--seed", "9", "--json");
        assertEquals(0, b.code(), b.err());
        assertEquals(3, Json.MAPPER.readTree(b.out()).get("samples").size());
        assertEquals(b.out(), c.out());
    }

    @Test
    void sftThenEvalOnAFixtureModel() throws Exception {
        Path out = tmp.resolve("sft");
        Result s = run("sft", "--model", TestPaths.fixture("qwen2-bf16-sharded").toString(), "--out", out.toString(),
                "--steps", "3", "--batch-size", "4");
        assertEquals(0, s.code(), s.err());
        assertTrue(s.out().startsWith("final loss "));
        Result e = run("eval", "--model", out.toString(), "--max-examples", "8", "--k", "2");
        assertEquals(0, e.code(), e.err());
        JsonNode j = Json.MAPPER.readTree(e.out());
        assertEquals(8, j.get("eval_examples").asInt());
        assertTrue(j.has("eval_accuracy") && j.has("eval_mean_at_k"));
    }

    @Test
    void rolloutServerCheckPassesOnBothEnginesAndFailsOnABadWeightLoad() throws Exception {
        java.nio.file.Path model = klrl.run.TinyDefault.ensure(s -> { });
        for (var kind : klrl.rollout.remote.StandInServer.Kind.values()) {
            try (var server = new klrl.rollout.remote.StandInServer(kind, model)) {
                String engine = kind.name().toLowerCase(java.util.Locale.ROOT);
                Result r = run("rollout-server-check", server.url(), "--engine", engine, "--model", model.toString(), "--json");
                assertEquals(0, r.code(), r.out() + r.err());
                JsonNode j = Json.MAPPER.readTree(r.out());
                assertTrue(j.get("passed").asBoolean() && j.get("tokens_compared").asInt() > 0
                        && j.get("logprob_diff_max").asDouble() < 1e-4, r.out());
                server.failLoads = true;
                Result bad = run("rollout-server-check", server.url(), "--engine", engine, "--model", model.toString(), "--json");
                assertEquals(1, bad.code(), bad.out());
                assertTrue(bad.out().contains("no rollout server took the new weights"), bad.out());
            }
        }
    }

    @Test
    void verifyReachesEveryGraderAndExplainsItsVerdict() {
        Result math = run("verify", "--gold", "\\frac{1}{2}", "--pred", "so the answer is \\boxed{0.5}");
        assertEquals("true", math.out().strip(), math.err());
        // verl's hendrycks grader compares normalised strings: 2/4 is not \frac{1}{2} there, as it is here
        Result hendrycks = run("verify", "--grader", "hendrycks", "--gold", "\\frac{1}{2}", "--pred", "so \\boxed{\\frac{2}{4}}");
        assertEquals("false", hendrycks.out().strip(), hendrycks.err());
        assertEquals("true", run("verify", "--gold", "\\frac{1}{2}", "--pred", "so \\boxed{\\frac{2}{4}}").out().strip());
        Result dapo = run("verify", "--grader", "dapo", "--gold", "42", "--pred", "work ... Answer: 42");
        assertEquals("true", dapo.out().strip(), dapo.err());
        Result explained = run("verify", "--explain", "--gold", "\\frac{1}{2}", "--pred", "so the answer is \\boxed{0.5}");
        assertEquals(0, explained.code(), explained.err());
        String e = explained.out();
        for (String key : new String[] {"gold_extracted: \\frac{1}{2}", "pred_extracted: 0.5", "gold_read: math", "correct: true",
                "why: equal as mathematical objects"}) {
            assertTrue(e.contains(key), key + " in:\n" + e);
        }
        Result hedged = run("verify", "--explain", "--gold", "3", "--pred", "\\boxed{" + "1+".repeat(40) + "1}");
        assertTrue(hedged.out().contains("correct: false") && hedged.out().contains("far longer than the gold"), hedged.out());
        Result bad = run("verify", "--grader", "no.such.Grader", "--gold", "1", "--pred", "1");
        assertEquals(2, bad.code(), bad.out() + bad.err());
        assertTrue(bad.err().strip().startsWith("error: --grader: reward 'no.such.Grader'") && !bad.err().contains("\tat "), bad.err());
    }

    @Test
    void aMissingResumePathAndAGpuRolloutDeviceWithoutGpusAreNamed() {
        Result r = run("train", "--resume", tmp.resolve("nope").toString());
        assertEquals(2, r.code(), r.err());
        assertEquals("error: --resume " + tmp.resolve("nope") + ": not found (give a run folder or one of its checkpoints)", r.err().strip());
        Result g = run("train", "--output-dir", tmp.resolve("g").toString(), "--max-steps", "1", "--set", "rollout.devices=cuda:0");
        assertEquals(2, g.code(), g.err());
        String last = g.err().strip().lines().reduce((a, b) -> b).orElse("");
        assertTrue(last.startsWith("error: rollout.devices cuda:0 requested but 0 GPU(s) are visible"), g.err());
    }

    @Test
    void rolloutServerCheckFindsTheWeightVersionOnEverySglangRelease() throws Exception {
        java.nio.file.Path model = klrl.run.TinyDefault.ensure(s -> { });
        var expected = java.util.Map.of("LEGACY", "/get_weight_version", "CURRENT", "/weight_version", "NEWEST", "/model_info");
        try (var server = new klrl.rollout.remote.StandInServer(klrl.rollout.remote.StandInServer.Kind.SGLANG, model)) {
            for (var release : klrl.rollout.remote.StandInServer.SglangRelease.values()) {
                server.release = release;
                server.htmlNotFound = release == klrl.rollout.remote.StandInServer.SglangRelease.NEWEST; // behind a proxy
                server.versionQueries.clear();
                Result r = run("rollout-server-check", server.url(), "--engine", "sglang", "--model", model.toString(), "--json",
                        "--prompts", "1");
                assertEquals(0, r.code(), release + ": " + r.out() + r.err());
                JsonNode j = Json.MAPPER.readTree(r.out());
                assertEquals(expected.get(release.name()), j.get("version_endpoint").asText(), release + ": " + r.out());
                assertEquals("klrl-v0", j.get("weight_version").asText(), release + ": " + r.out());
                assertEquals(java.util.Set.of(expected.get(release.name())), server.versionQueries.keySet(), release.name());
            }
        }
    }

    @Test
    void gpuCheckRunsOnCpuDevicesAndRefusesAMissingGpu() throws Exception {
        // the GPU node's check, on the CPU seam: cpu vs "device" logits, placement over 2 devices, timed steps
        // on one device, with layer placement and data parallel; data-parallel gradients vs one device
        Result r = run("gpu-check", "--device", "cpu", "--devices", "cpu,cpu", "--steps", "2", "--json");
        assertEquals(0, r.code(), r.err() + r.out());
        JsonNode j = Json.MAPPER.readTree(r.out());
        assertTrue(j.get("passed").asBoolean(), r.out());
        assertEquals(2, j.get("steps").size(), r.out());
        assertTrue(j.get("checks").has("placement_gradients") && j.get("placement_gradients_max_rel_diff").asDouble() < 1e-5, r.out());
        assertTrue(j.get("placement").asText().contains("[2, 2]"), r.out());
        assertEquals(2, j.get("steps_data_parallel").size(), r.out());
        assertTrue(j.get("steps_data_parallel").get(1).has("time_grad_reduce"), r.out());
        assertTrue(j.get("checks").get("data_parallel_gradients").asBoolean()
                && j.get("data_parallel_gradients_max_rel_diff").asDouble() < 1e-5, r.out());
        // fused attention against eager on the device, and timed long rows with each
        assertTrue(j.get("checks").get("attention_sdpa").asBoolean() && j.get("attention_sdpa_logprob_max_abs_diff").asDouble() < 1e-4,
                r.out());
        assertTrue(j.get("attention_row_seconds").get("sdpa_1024").asDouble() > 0
                && j.get("attention_row_seconds").get("eager_1024").asDouble() > 0, r.out());
        if (ai.djl.engine.Engine.getEngine("PyTorch").getGpuCount() == 0) {
            Result g = run("gpu-check");
            assertEquals(2, g.code());
            assertTrue(g.err().contains("GPU(s) are visible"), g.err());
        }
        // --devices and --parallel are training's too
        TrainCommand t = new TrainCommand();
        new picocli.CommandLine(t).parseArgs("--devices", "0,1,2,3", "--parallel", "layers");
        assertEquals("0,1,2,3", TrainCommand.config(t).model().device());
        assertEquals("layers", TrainCommand.config(t).train().parallel());
    }

    @Test
    void benchPrintsJsonWithTheMachineSpeedBesideItsNumbers() throws Exception {
        Result r = run("bench", "--only", "verifier", "--repeats", "1");
        assertEquals(0, r.code(), r.err() + r.out());
        JsonNode j = Json.MAPPER.readTree(r.out());
        for (String when : new String[] {"machine_at_start", "machine_at_end"}) {
            JsonNode m = j.get("environment").get(when);
            assertTrue(m.get("gemm_fp32_gflops").asDouble() > 1 && m.get("gemv_stream_gb_per_s").asDouble() > 0.1, r.out());
        }
        assertTrue(j.get("verifier").get("fast_checks_per_s_1_thread").asDouble() > 100, r.out());
        assertTrue(!j.has("rollout") && !j.has("update"), r.out());
    }

    @Test
    void trainFlagsOverrideTheConfig() {
        TrainCommand t = new TrainCommand();
        new picocli.CommandLine(t).parseArgs("--config", "grid-k1-reward", "--kl", "k3", "--kl-in-loss", "--kl-coef", "0.05",
                "--algo", "rloo", "--n", "4", "--batch-size", "8", "--lr", "3e-6", "--max-steps", "7", "--seed", "5",
                "--output-dir", "/tmp/x");
        klrl.config.TrainConfig c = TrainCommand.config(t);
        assertEquals("k3", c.kl().estimator());
        assertEquals("loss", c.kl().placement());
        assertEquals(0.05, c.kl().coef());
        assertEquals("rloo", c.algorithm().name());
        assertEquals(4, c.rollout().n());
        assertEquals(8, c.train().batchSize());
        assertEquals(8, c.train().miniBatchSize());
        assertEquals(3e-6, c.optim().lr());
        assertEquals(7, c.train().maxSteps());
        assertEquals(5, c.train().seed());
        assertEquals("/tmp/x", c.outputDir());
        // --set reaches any key, after the named flags
        TrainCommand s = new TrainCommand();
        new picocli.CommandLine(s).parseArgs("--config", "grid-k1-reward", "--set", "model.lora.rank=16", "--n", "4",
                "--set", "rollout.n=6");
        assertEquals(16, TrainCommand.config(s).model().lora().rank());
        assertEquals(6, TrainCommand.config(s).rollout().n());
        Result both = run("--kl-in-reward", "--kl-in-loss", "--max-steps", "1");
        assertEquals(2, both.code());
        assertTrue(both.err().contains("at most one of --kl-in-reward"), both.err());
    }

    @Test
    void badInputIsOneLineWithoutStackTrace() {
        Result r = run("logprobs", "--model", tmp.resolve("nope").toString(), "--input-ids", "1,2");
        assertEquals(2, r.code());
        assertTrue(r.err().startsWith("error: ") && r.err().contains("config.json"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        Result r2 = run("logprobs", "--model", TestPaths.fixture("qwen2-bf16-sharded").toString(), "--input-ids", "1,x");
        assertEquals(2, r2.code());
        assertTrue(r2.err().contains("'x' is not an integer"), r2.err());
        Result r3 = run("logprobs", "--model", TestPaths.fixture("qwen2-bf16-sharded").toString(), "--input-ids", "1,999999");
        assertTrue(r3.err().contains("outside the vocabulary"), r3.err());
    }

    @Test
    void resumeAndEvalReadTheRunsOwnConfig() throws Exception {
        // a run with settings of its own; resuming it names no config, and still continues with them
        Path yaml = tmp.resolve("own.yaml"), out = tmp.resolve("own-run");
        Files.writeString(yaml, "base: tiny-cpu\nmodel: {path: " + klrl.run.TinyDefault.ensure(x -> { }) + "}\n"
                + "train: {max_steps: 1, batch_size: 4, mini_batch_size: 4}\nrollout: {n: 2, max_new_tokens: 9}\n"
                + "eval: {before_start: false, max_examples: 8, k: 0}\noutput_dir: " + out + "\n");
        assertEquals(0, run("--config", yaml.toString()).code());
        Result r = run("--resume", out.toString(), "--set", "train.max_steps=2");
        assertEquals(0, r.code(), r.err());
        klrl.config.TrainConfig saved = klrl.config.ConfigLoader.load(out.resolve("config.yaml").toString(), java.util.Map.of());
        assertEquals(2, saved.rollout().n());
        assertEquals(9, saved.rollout().maxNewTokens());
        assertEquals(2, saved.train().maxSteps());
        assertEquals(2, Files.readAllLines(out.resolve("metrics.jsonl")).stream().filter(l -> l.contains("reward_mean")).count());
        // eval on one of its checkpoints uses that config too: its prompts, its max_new_tokens
        Result e = run("eval", "--model", out.resolve("checkpoints/step-000002").toString(), "--max-examples", "8");
        assertEquals(0, e.code(), e.err());
        JsonNode j = Json.MAPPER.readTree(e.out());
        assertEquals(8, j.get("eval_examples").asInt());
    }
}
