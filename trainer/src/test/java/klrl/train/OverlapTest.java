package klrl.train;

import static klrl.train.TrainerTest.comparable;
import static klrl.train.TrainerTest.small;
import static klrl.train.TrainerTest.stepLines;
import static klrl.train.TrainerTest.train;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import klrl.rollout.remote.StandInServer;
import klrl.util.UserError;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Generation overlapped with training (rollout.overlap): the rollout of step t is generated on a copy
 * of the policy on rollout.devices (or on the servers) while step t trains on the rollout of step
 * t − K. It must change the wall time only: the same samples, rewards, losses and gradient norms as
 * the same run done one stage after the other; and a lagged run stopped and resumed must give the
 * uninterrupted run's metrics.
 */
@Tag("e2e")
class OverlapTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    static Map<String, Object> lagged(int k, String algorithm, int steps) {
        Map<String, Object> o = new HashMap<>(Map.of("algorithm.off_policy_lag", k, "algorithm.name", algorithm,
                "train.max_steps", steps, "rollout.devices", "cpu", "checkpoint.every", 0));
        return o;
    }

    static Map<String, Object> with(Map<String, Object> a, Map<String, Object> b) {
        Map<String, Object> m = new HashMap<>(a);
        m.putAll(b);
        return m;
    }

    /** Every step line equal but the wall-clock fields, and the lag metrics as LagQueue states them. */
    static void assertSameRun(Path seq, Path ovl, int k) throws Exception {
        List<JsonNode> a = stepLines(seq), b = stepLines(ovl);
        assertEquals(a.size(), b.size());
        for (int i = 0; i < a.size(); i++) {
            assertEquals(comparable(a.get(i)), comparable(b.get(i)), "step " + (i + 1));
            if (i >= k) { // step t (0-based i) trains on the rollout of step i − K, sampled by version max(0, i − 2K)
                assertEquals(Math.max(0, i - 2 * k), b.get(i).get("rollout_policy_version").asLong(), "step " + (i + 1));
                assertEquals(Math.min(k, i - k), b.get(i).get("policy_version_lag").asLong(), "step " + (i + 1));
                assertTrue(b.get(i).has("grad_norm"), "step " + (i + 1));
            } else {
                assertTrue(!b.get(i).has("grad_norm"), "step " + (i + 1) + " only fills the queue");
            }
            assertTrue(b.get(i).get("time_overlap_wait").asDouble() >= 0);
        }
    }

    @ParameterizedTest(name = "{0} K={1}")
    @CsvSource({"grpo,1", "grpo,4", "ppo,1", "ppo,4"})
    void anOverlappedLocalRunEqualsTheSameRunDoneInTurn(String algorithm, int k) throws Exception {
        Map<String, Object> o = lagged(k, algorithm, k == 4 ? 10 : 5);
        train(small(tmp.resolve("seq"), o), null);
        train(small(tmp.resolve("ovl"), with(o, Map.of("rollout.overlap", true))), null);
        assertSameRun(tmp.resolve("seq"), tmp.resolve("ovl"), k);
    }

    @ParameterizedTest(name = "{0} K={1} {2}")
    @CsvSource({"grpo,1,SGLANG", "grpo,4,SGLANG", "ppo,1,VLLM", "ppo,4,VLLM"})
    void anOverlappedServerRunEqualsTheSameRunDoneInTurn(String algorithm, int k, StandInServer.Kind kind) throws Exception {
        try (StandInServer server = new StandInServer(kind, TrainerTest.base)) {
            String engine = kind.name().toLowerCase(java.util.Locale.ROOT);
            Map<String, Object> o = with(lagged(k, algorithm, k == 4 ? 10 : 4), Map.of("rollout.engine", engine,
                    "rollout.urls", List.of(server.url()), "rollout.weights_dir", tmp.resolve("weights").toString()));
            train(small(tmp.resolve("seq"), o), null);
            train(small(tmp.resolve("ovl"), with(o, Map.of("rollout.overlap", true))), null);
            assertSameRun(tmp.resolve("seq"), tmp.resolve("ovl"), k);
            for (JsonNode n : stepLines(tmp.resolve("ovl"))) {
                assertTrue(n.get("rollout_logprob_diff_max").asDouble() < 1e-4, n.toString());
            }
        }
    }

    @Test
    void aLaggedRunResumedInProcessTrainsOnTheQueuedRollouts() throws Exception {
        Map<String, Object> o = with(lagged(2, "grpo", 6), Map.of("rollout.overlap", true, "checkpoint.every", 3));
        train(small(tmp.resolve("whole"), o), null);
        train(small(tmp.resolve("cut"), with(o, Map.of("train.max_steps", 3))), null);
        Path ckpt = tmp.resolve("cut/checkpoints/step-000003");
        assertTrue(Files.isRegularFile(ckpt.resolve(LagQueue.FILE)));
        train(small(tmp.resolve("cut"), o), ckpt);
        assertSameRun(tmp.resolve("whole"), tmp.resolve("cut"), 2);
        // the queue belongs to its lag: another lag is refused in one line
        UserError e = assertThrows(UserError.class, () -> new Trainer(small(tmp.resolve("other"),
                with(o, Map.of("algorithm.off_policy_lag", 1))), ckpt, s -> { }).close());
        assertTrue(e.getMessage().contains("holds 2 queued rollouts") && e.getMessage().contains("off_policy_lag 1"), e.getMessage());
        // a checkpoint without the queue file (as versions before it wrote them): what is missing is said, not a lag change
        Path old = tmp.resolve("old-ckpt");
        try (var files = Files.list(ckpt)) {
            Files.createDirectories(old);
            for (Path f : files.toList()) {
                if (!f.getFileName().toString().equals(LagQueue.FILE)) {
                    Files.copy(f, old.resolve(f.getFileName()));
                }
            }
        }
        var manifest = (com.fasterxml.jackson.databind.node.ObjectNode) klrl.util.Json.read(old.resolve("manifest.json"));
        ((com.fasterxml.jackson.databind.node.ObjectNode) manifest.get("files")).remove(LagQueue.FILE); // it never listed the file
        Files.writeString(old.resolve("manifest.json"), klrl.util.Json.write(manifest));
        UserError missing = assertThrows(UserError.class, () -> new Trainer(small(tmp.resolve("older"), o), old, s -> { }).close());
        assertTrue(missing.getMessage().startsWith(old + " has no " + LagQueue.FILE + ": algorithm.off_policy_lag 2 resumes on the"
                + " queued rollouts of steps 2–3") && !missing.getMessage().contains("holds"), missing.getMessage());
    }

    @Test
    void overlapNeedsALagAndDevicesOfItsOwn() {
        UserError noLag = assertThrows(UserError.class, () -> small(tmp.resolve("a"), Map.of("rollout.overlap", true,
                "rollout.devices", "cpu")));
        assertTrue(noLag.getMessage().contains("algorithm.off_policy_lag ≥ 1"), noLag.getMessage());
        UserError noDevices = assertThrows(UserError.class, () -> small(tmp.resolve("b"), Map.of("rollout.overlap", true,
                "algorithm.off_policy_lag", 1)));
        assertTrue(noDevices.getMessage().contains("rollout.devices"), noDevices.getMessage());
    }

    /**
     * A lagged, overlapped run in a JVM of its own, stopped by SIGTERM (it finishes the step and
     * checkpoints) and by SIGKILL (mid-step, back to the last checkpoint), resumed each time: the
     * metrics of the run that was never stopped.
     */
    @Test
    void sigtermAndSigkillThenResumeGiveTheUninterruptedMetrics() throws Exception {
        Map<String, Object> o = with(lagged(2, "grpo", 7), Map.of("rollout.overlap", true, "checkpoint.every", 2));
        train(small(tmp.resolve("ref"), o), null);
        Path yaml = tmp.resolve("run.yaml");
        Files.writeString(yaml, klrl.config.ConfigLoader.toYaml(small(tmp.resolve("killed"), o)));
        Path killed = tmp.resolve("killed");
        // SIGTERM after step 3's line; SIGKILL after step 5's (its checkpoint is of step 4)
        String[][] stops = {{"3", "TERM"}, {"5", "KILL"}};
        for (String[] s : stops) {
            Process p = ReliabilityTest.trainer(yaml, Files.exists(killed.resolve("checkpoints/latest")) ? "--resume" : "--overwrite");
            var lines = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream()));
            for (String l; (l = lines.readLine()) != null; ) {
                if (l.startsWith("step " + s[0] + "/")) {
                    if (s[1].equals("TERM")) {
                        p.destroy();
                    } else {
                        p.destroyForcibly();
                    }
                    break;
                }
            }
            assertTrue(p.waitFor(60, TimeUnit.SECONDS));
            String latest = Files.readString(killed.resolve("checkpoints/latest")).strip();
            // SIGTERM: the step under way ends and is checkpointed (3, or 4 when the signal came after its start)
            assertTrue(s[1].equals("TERM") ? latest.equals("step-000003") || latest.equals("step-000004")
                    : latest.equals("step-000004") || latest.equals("step-000006"), s[1] + ": " + latest);
        }
        Process last = ReliabilityTest.trainer(yaml, "--resume");
        last.getInputStream().transferTo(java.io.OutputStream.nullOutputStream());
        assertEquals(0, last.waitFor());
        assertSameRun(tmp.resolve("ref"), killed, 2);
    }
}
