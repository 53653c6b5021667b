package klrl.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import klrl.util.UserError;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A run folder holds one run: a new run where one is is refused (nothing touched), resumed, or replaced whole. */
@Tag("e2e")
class RunFolderTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    /** Every file under {@code dir} with its size and modification time: what "untouched" compares. */
    static Map<String, String> snapshot(Path dir) throws Exception {
        Map<String, String> m = new TreeMap<>();
        try (var s = Files.walk(dir)) {
            for (Path p : s.filter(Files::isRegularFile).toList()) {
                m.put(dir.relativize(p).toString(), Files.size(p) + "@" + Files.getLastModifiedTime(p).toMillis());
            }
        }
        return m;
    }

    static long eventFiles(Path dir) throws Exception {
        try (var s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().startsWith(klrl.metrics.TensorBoardLog.PREFIX)).count();
        }
    }

    @Test
    void aFinishedRunIsRefusedUntouchedThenResumedOrReplacedWhole() throws Exception {
        Path run = tmp.resolve("run");
        TrainerTest.train(TrainerTest.small(run, Map.of()), null); // 4 steps, checkpoints at 2 and 4
        Map<String, String> before = snapshot(run);
        UserError e = assertThrows(UserError.class,
                () -> TrainerTest.train(TrainerTest.small(run, Map.of("train.seed", 7, "train.max_steps", 2)), null));
        assertTrue(e.getMessage().contains("last step 4, checkpoint step-000004") && e.getMessage().contains("--resume " + run)
                && e.getMessage().contains("--overwrite") && !e.getMessage().contains("\n"), e.getMessage());
        before.remove(".lock");
        Map<String, String> after = snapshot(run);
        after.remove(".lock");
        assertEquals(before, after, "a refused start leaves the earlier run as it was");
        // --resume continues it
        TrainerTest.train(TrainerTest.small(run, Map.of("train.max_steps", 5)), run);
        assertEquals(5, TrainerTest.stepLines(run).size());
        // --overwrite (the CLI flag) replaces it whole: its metrics, checkpoints and event files are gone
        Path yaml = tmp.resolve("new.yaml");
        Files.writeString(yaml, klrl.config.ConfigLoader.toYaml(TrainerTest.small(run, Map.of("train.seed", 7, "train.max_steps", 2))));
        assertEquals(0, klrl.cli.Main.run("train", "--config", yaml.toString(), "--overwrite"));
        assertEquals(2, TrainerTest.stepLines(run).size());
        assertEquals(List.of("latest", "step-000002"), Files.list(run.resolve("checkpoints")).map(p -> p.getFileName().toString())
                .sorted().toList());
        assertEquals(1, eventFiles(run));
        assertEquals(7, klrl.config.ConfigLoader.load(run.resolve("config.yaml").toString(), Map.of()).train().seed());
    }

    @Test
    void anEmptyFolderStartsAndARunKilledMidWayIsRefused() throws Exception {
        Path run = tmp.resolve("empty");
        Files.createDirectories(run);
        Path yaml = tmp.resolve("run.yaml");
        Files.writeString(yaml, klrl.config.ConfigLoader.toYaml(TrainerTest.small(run, Map.of("train.max_steps", 8,
                "checkpoint.every", 0))));
        // a real process, killed (SIGKILL) after its second step and before any checkpoint
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
                System.getProperty("java.class.path"), "klrl.cli.Main", "train", "--config", yaml.toString())
                .redirectError(ProcessBuilder.Redirect.DISCARD).start();
        var lines = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream()));
        for (String l; (l = lines.readLine()) != null; ) {
            if (l.startsWith("step 2/")) {
                p.destroyForcibly();
                break;
            }
        }
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertFalse(Files.exists(run.resolve("checkpoints/latest")));
        Map<String, String> before = snapshot(run);
        before.remove(".lock");
        UserError e = assertThrows(UserError.class, () -> TrainerTest.train(TrainerTest.small(run, Map.of()), null));
        assertTrue(e.getMessage().matches(".*holds a run \\(last step [2-8], no checkpoint\\).*"), e.getMessage());
        Map<String, String> after = snapshot(run);
        after.remove(".lock");
        assertEquals(before, after);
    }

    @Test
    void anotherRunsFolderIsNotMixedIntoAResume() throws Exception {
        Path a = tmp.resolve("a"), b = tmp.resolve("b");
        TrainerTest.train(TrainerTest.small(a, Map.of("train.max_steps", 2)), null);
        TrainerTest.train(TrainerTest.small(b, Map.of("train.max_steps", 2)), null);
        UserError e = assertThrows(UserError.class, () -> TrainerTest.train(TrainerTest.small(b, Map.of()), a));
        assertTrue(e.getMessage().contains("holds another run") && e.getMessage().contains(a.toString()), e.getMessage());
        // resuming a's checkpoint into a fresh folder is a new run that starts from it
        Path c = tmp.resolve("c");
        TrainerTest.train(TrainerTest.small(c, Map.of("train.max_steps", 3)), a.resolve("checkpoints/step-000002"));
        assertEquals(1, TrainerTest.stepLines(c).size());
    }
}
