package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import klrl.util.UserError;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A step that fails while its overlapped rollout is being generated: the trainer cancels that rollout
 * and waits for its thread before any weights are freed (with LoRA the copy on rollout.devices reads
 * the master's frozen weights). The failure is real: a KL coefficient so large that every gradient is
 * non-finite, so the run stops at its first update (train.max_skipped_updates).
 */
@Tag("e2e") // whole runs and subprocesses: after the unit tests
class OverlapShutdownTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    /**
     * A user's reward that takes its time (as a code-execution or model-graded reward does): 40 ms a sample, so
     * the next step's rollout is still being scored when the update fails.
     */
    public static final class SlowReward implements klrl.rewards.Reward {
        @Override
        public Score score(String prompt, String completion, String gold) {
            try {
                Thread.sleep(40);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return new Score(completion.contains(klrl.rewards.Extractor.gold(gold)) ? 1 : 0, Map.of());
        }
    }

    /** Overlapped (lag 1, a copy on a CPU "device"), LoRA, the slow reward. */
    static Map<String, Object> failing() {
        return Map.ofEntries(Map.entry("rollout.devices", "cpu"), Map.entry("rollout.overlap", true),
                Map.entry("algorithm.off_policy_lag", 1), Map.entry("model.lora.rank", 4), Map.entry("kl.estimator", "k1"),
                Map.entry("kl.placement", "loss"), Map.entry("kl.coef", 1e38), Map.entry("train.max_skipped_updates", 1),
                Map.entry("train.reward", SlowReward.class.getName()), Map.entry("train.reward_workers", 1),
                Map.entry("train.batch_size", 8), Map.entry("train.mini_batch_size", 4), Map.entry("rollout.n", 8),
                Map.entry("train.max_steps", 4), Map.entry("checkpoint.every", 0));
    }

    @Test
    void closeWaitsForTheRolloutInFlight() throws Exception {
        Trainer t = new Trainer(TrainerTest.small(tmp.resolve("run"), failing()), null, s -> { });
        UserError e = assertThrows(UserError.class, () -> t.run(s -> { }));
        assertTrue(e.getMessage().contains("updates in a row skipped"), e.getMessage());
        assertTrue(t.rolloutInFlight(), "the next step's rollout was being generated when the update failed");
        t.close();
        assertFalse(t.rolloutInFlight(), "close returned while the rollout thread still ran on the copy's weights");
    }

    @Test
    void closeWaitsForAGenerationInFlight() throws Exception {
        // long samples (temperature 5 rarely draws EOS): the generation is under way, in native code, when close comes
        Trainer t = new Trainer(TrainerTest.small(tmp.resolve("gen"), Map.of("rollout.devices", "cpu", "rollout.overlap", true,
                "algorithm.off_policy_lag", 1, "model.lora.rank", 4, "rollout.max_new_tokens", 512, "rollout.temperature", 5.0,
                "rollout.n", 8)), null, s -> { });
        Rollouts.Pending p = t.startRollout(0);
        Thread.sleep(200);
        assertFalse(p.future().isDone(), "the rollout should still be generating");
        t.close();
        assertTrue(p.future().isDone(), "close returned while the rollout thread still generated on the copy's weights");
    }

    @Test
    void aFailedOverlappedStepEndsTheProcessWithOneLine() throws Exception {
        Path yaml = tmp.resolve("run.yaml");
        Files.writeString(yaml, klrl.config.ConfigLoader.toYaml(TrainerTest.small(tmp.resolve("run"), failing())));
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
                klrl.TestPaths.classPath(), "klrl.cli.Main", "train", "--config", yaml.toString()));
        Process p = new ProcessBuilder(cmd).directory(tmp.toFile()).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(300, TimeUnit.SECONDS));
        assertEquals(2, p.exitValue(), err); // a user error, not a crash (134) or a hang
        List<String> errors = err.lines().filter(l -> l.startsWith("error:")).toList();
        assertEquals(1, errors.size(), err);
        assertTrue(errors.get(0).contains("updates in a row skipped"), err);
        assertFalse(err.contains("\tat ") || err.contains("Exception"), err);
        try (var files = Files.list(tmp)) {
            assertTrue(files.noneMatch(f -> f.getFileName().toString().startsWith("hs_err")), "the JVM crashed");
        }
    }
}
