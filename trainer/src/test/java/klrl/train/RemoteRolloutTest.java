package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import klrl.rollout.remote.Dialect;
import klrl.rollout.remote.Sglang;
import klrl.rollout.remote.StandInServer;
import klrl.rollout.remote.Vllm;
import klrl.util.Json;
import klrl.util.UserError;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Training with rollouts on SGLang / vLLM servers — here stand-ins that speak those servers' schemas
 * and sample with this project's engine ({@link StandInServer}): the same trajectory as local
 * rollouts, retries, a server going down mid-step, a failed weight load, stale weights.
 */
@Tag("e2e")
class RemoteRolloutTest {
    @TempDir Path tmp;
    static Path base;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
        base = TrainerTest.base;
    }

    /** TrainerTest's small run, 3 steps of 4 prompts × 4 samples, a checkpoint after every step. */
    static Map<String, Object> small(Path out, Map<String, Object> extra) {
        Map<String, Object> o = new HashMap<>(Map.of("output_dir", out.toString(), "train.max_steps", 3,
                "train.micro_batch_size", 8, "checkpoint.every", 1));
        o.putAll(extra);
        return o;
    }

    Map<String, Object> remote(String engine, List<StandInServer> servers) {
        return remote(engine, servers, 20);
    }

    /**
     * A run on the servers, its trajectory compared with a local one: without the rollout correction the
     * servers' default turns on (RolloutCorrectionTest), whose weights — 1 within the rounding of one
     * sequence at a time against the local engine's batches — would carry that rounding into the update.
     */
    Map<String, Object> remote(String engine, List<StandInServer> servers, double timeoutS) {
        return Map.of("rollout.engine", engine, "rollout.urls", servers.stream().map(StandInServer::url).toList(),
                "rollout.weights_dir", tmp.resolve("weights-" + engine).toString(), "rollout.request_timeout_s", timeoutS,
                "rollout.max_retries", 4, "algorithm.rollout_correction.is", "none");
    }

    static List<JsonNode> steps(Path run) throws Exception {
        return Files.readAllLines(run.resolve("metrics.jsonl")).stream().map(l -> {
            try {
                return Json.MAPPER.readTree(l);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }).filter(n -> n.has("reward_mean")).toList();
    }

    static void train(Map<String, Object> o, java.util.function.Consumer<String> console) throws Exception {
        try (Trainer t = new Trainer(TrainerTest.small(Path.of((String) o.get("output_dir")), o), null, s -> { })) {
            t.run(console);
        }
    }

    static Map<String, Object> merge(Map<String, Object> a, Map<String, Object> b) {
        Map<String, Object> m = new HashMap<>(a);
        m.putAll(b);
        return m;
    }

    /**
     * The same trajectory as a local run that recomputes its behaviour log-probs too (as every remote run
     * does): every metric equal but timings, memory and the remote run's own bookkeeping.
     */
    static void sameTrajectory(List<JsonNode> local, List<JsonNode> remote) {
        assertEquals(local.size(), remote.size());
        Set<String> own = Set.of("rollout_retries", "rollout_servers_usable", "weight_version", "live_arrays", "rss_mb", "tokens_per_s");
        for (int i = 0; i < local.size(); i++) {
            JsonNode a = local.get(i), b = remote.get(i);
            for (var it = a.fieldNames(); it.hasNext(); ) {
                String k = it.next();
                if (!k.startsWith("time") && !own.contains(k) && !k.startsWith("rollout_logprob_diff")) {
                    assertEquals(a.get(k).asDouble(), b.get(k).asDouble(), 1e-6 * Math.max(1, Math.abs(a.get(k).asDouble())),
                            "step " + (i + 1) + " " + k);
                }
            }
            // the samples' log-probs: the server's (one sequence at a time) against the local engine's (batched)
            assertEquals(a.get("rollout_logprob_diff_max").asDouble(), b.get("rollout_logprob_diff_max").asDouble(), 1e-5);
            assertTrue(b.get("rollout_logprob_diff_max").asDouble() < 1e-4, b.toString());
            assertEquals(i, b.get("weight_version").asInt(), "the servers sample with the weights of the steps done");
        }
    }

    @ParameterizedTest(name = "{0}, lora rank {1}")
    @CsvSource({"sglang, 0", "sglang, 4", "vllm, 0", "vllm, 4"})
    void aRunOnServersDrawsWhatALocalRunDraws(String engine, int rank) throws Exception {
        Map<String, Object> s = Map.of("model.lora.rank", rank, "optim.lr", rank > 0 ? 2e-3 : 3e-4, "rollout.recompute_logprobs", true);
        Path local = tmp.resolve("local"), remote = tmp.resolve("remote");
        train(small(local, s), x -> { });
        StandInServer.Kind kind = engine.equals("sglang") ? StandInServer.Kind.SGLANG : StandInServer.Kind.VLLM;
        try (StandInServer a = new StandInServer(kind, base)) {
            train(merge(small(remote, s), remote(engine, List.of(a))), x -> { });
            assertEquals(3 * 4 * 4, a.generated.get());
        }
        sameTrajectory(steps(local), steps(remote));
        // published versions: the newest two are kept
        try (var l = Files.list(tmp.resolve("weights-" + engine))) {
            assertEquals(List.of("klrl-v1", "klrl-v2"), l.map(p -> p.getFileName().toString()).sorted().toList());
        }
        assertTrue(Files.isRegularFile(tmp.resolve("weights-" + engine + "/klrl-v2/" + (rank > 0 ? "adapter_model.safetensors" : "model.safetensors"))));
    }

    @Test
    void timeoutsRetriesAndAServerGoingDownMidStepChangeNothing() throws Exception {
        Path local = tmp.resolve("local"), remote = tmp.resolve("remote");
        train(small(local, Map.of("rollout.recompute_logprobs", true)), x -> { });
        try (StandInServer a = new StandInServer(StandInServer.Kind.SGLANG, base);
             StandInServer b = new StandInServer(StandInServer.Kind.SGLANG, base)) {
            a.slowNext.set(2);   // two requests held past the client's 2 s timeout
            a.failNext.set(5);   // five 503s
            b.dieAfter = 20;     // then b stops answering in the middle of step 2
            train(merge(small(remote, Map.of("rollout.recompute_logprobs", true)), remote("sglang", List.of(a, b), 2)), x -> { });
            List<JsonNode> m = steps(remote);
            sameTrajectory(steps(local), m);
            // every injected fault was met and retried (when, depends on which server was out of rotation)
            assertEquals(0, a.slowNext.get() + a.failNext.get());
            assertTrue(m.stream().mapToInt(x -> x.get("rollout_retries").asInt()).sum() >= 7, m.toString());
            assertEquals(1, m.get(2).get("rollout_servers_usable").asInt(), m.get(2).toString());
            assertTrue(b.generated.get() >= 20, "b answered " + b.generated.get());
            // a sample b drew as it went down may have been lost with the connection and drawn again on a
            assertTrue(a.generated.get() + b.generated.get() >= 3 * 16, a.generated + " + " + b.generated);
        }
    }

    @Test
    void aFailedWeightLoadStopsWithOneLineAndACheckpoint() throws Exception {
        Path run = tmp.resolve("run");
        try (StandInServer a = new StandInServer(StandInServer.Kind.VLLM, base)) {
            UserError e = assertThrows(UserError.class, () -> train(merge(small(run, Map.of("checkpoint.every", 0)),
                    remote("vllm", List.of(a))), line -> a.failLoads |= line.startsWith("step 1/")));
            assertTrue(e.getMessage().startsWith("no rollout server took the new weights: " + a.url()), e.getMessage());
            assertTrue(e.getMessage().contains("stopped at step 2, checkpoint ") && e.getMessage().endsWith("step-000001"), e.getMessage());
            assertTrue(Files.isRegularFile(run.resolve("checkpoints/step-000001/model.safetensors")));
        }
    }

    @Test
    void aServerOnOldWeightsGetsNoRequestsAndAloneStopsTheRun() throws Exception {
        Path run = tmp.resolve("run");
        try (StandInServer a = new StandInServer(StandInServer.Kind.SGLANG, base);
             StandInServer b = new StandInServer(StandInServer.Kind.SGLANG, base)) {
            // b acknowledges every load after the first and keeps its weights: it reports klrl-v0 and is refused
            train(merge(small(run, Map.of()), remote("sglang", List.of(a, b))), line -> b.ignoreLoads |= line.startsWith("step 1/"));
            int fromB = b.generated.get();
            List<JsonNode> m = steps(run);
            assertEquals(1, m.get(1).get("rollout_servers_usable").asInt(), m.get(1).toString());
            assertEquals(3 * 16, a.generated.get() + fromB);
            assertTrue(fromB <= 16, "b sampled after its weights went stale: " + fromB);
        }
        // alone, a stale server stops the run before it samples anything
        try (StandInServer c = new StandInServer(StandInServer.Kind.SGLANG, base)) {
            UserError e = assertThrows(UserError.class, () -> train(merge(small(tmp.resolve("alone"), Map.of()),
                    remote("sglang", List.of(c))), line -> c.ignoreLoads |= line.startsWith("step 1/")));
            assertTrue(e.getMessage().contains("serves weight version klrl-v0 after loading klrl-v1"), e.getMessage());
        }
    }

    @Test
    void responsesThatCannotEnterABatchAreRefused() {
        Dialect.Weights v1 = new Dialect.Weights(1, tmp, false);
        var sg = new Sglang();
        JsonNode old = Json.MAPPER.createObjectNode().set("meta_info", Json.MAPPER.createObjectNode().put("weight_version", "klrl-v0"));
        assertThrows(Dialect.Stale.class, () -> sg.parse(old, v1, List.of(2L), 8));
        // a partial sample: fewer log-probs than tokens
        assertThrows(Dialect.Refused.class, () -> Dialect.checked(new long[] {1, 2, 3}, new float[] {-1f, -2f}, "length", 8, "x"));
        // aborted
        JsonNode aborted = Json.MAPPER.createObjectNode().<com.fasterxml.jackson.databind.node.ObjectNode>set("choices",
                Json.MAPPER.createArrayNode().add(Json.MAPPER.createObjectNode().put("finish_reason", "abort")
                        .<com.fasterxml.jackson.databind.node.ObjectNode>set("token_ids", Json.MAPPER.createArrayNode().add(5))
                        .set("logprobs", Json.MAPPER.createObjectNode().set("token_logprobs", Json.MAPPER.createArrayNode().add(-0.5)))));
        assertThrows(Dialect.Refused.class, () -> new Vllm("m").parse(aborted, v1, List.of(2L), 8));
    }
}
