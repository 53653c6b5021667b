package klrl.train;

import static klrl.train.TrainerTest.comparable;
import static klrl.train.TrainerTest.small;
import static klrl.train.TrainerTest.stepLines;
import static klrl.train.TrainerTest.train;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import klrl.checkpoint.Checkpoints;
import klrl.util.UserError;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Faults a user meets: a full disk, damaged checkpoints, torn metrics, a busy folder, impossible sizes, SIGKILL. */
@Tag("e2e") // whole runs and subprocesses: after the unit tests
class ReliabilityTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TrainerTest.model();
    }

    static void run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertEquals(0, p.waitFor(), String.join(" ", cmd) + ": " + out);
    }

    static boolean noTempFolders(Path run) throws Exception {
        try (var s = Files.list(run.resolve("checkpoints"))) {
            return s.noneMatch(p -> p.toString().endsWith(".tmp"));
        }
    }

    @Test
    void aFullDiskDuringACheckpointIsOneLineAndLeavesEarlierCheckpointsIntact() throws Exception {
        // a real small file system: room for one checkpoint of the tiny model (8 MB) and the metrics, not two
        Path mnt = Files.createDirectories(tmp.resolve("small-disk"));
        run("mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", mnt.toString());
        try {
            Path out = mnt.resolve("run");
            UserError e = assertThrows(UserError.class, () -> train(small(out, Map.of()), null));
            assertTrue(e.getMessage().startsWith("cannot write checkpoint " + out.resolve("checkpoints/step-000004"))
                    && e.getMessage().contains("MiB free there") && e.getMessage().contains("needs about"), e.getMessage());
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
            assertEquals("step-000002", Files.readString(out.resolve("checkpoints/latest")).strip());
            assertNull(Checkpoints.damage(out.resolve("checkpoints/step-000002")));
            assertTrue(noTempFolders(out));
        } finally {
            run("umount", mnt.toString());
        }
    }

    @Test
    void resumeSkipsADamagedLatestCheckpointAndRefusesOneNamedExplicitly() throws Exception {
        Path a = tmp.resolve("a"), b = tmp.resolve("b");
        train(small(a, Map.of()), null);
        train(small(b, Map.of()), null);
        // cut the newest checkpoint's weights to 1,000 bytes, as a crash of the disk or a bad copy would
        Path damaged = b.resolve("checkpoints/step-000004");
        try (RandomAccessFile f = new RandomAccessFile(damaged.resolve("model.safetensors").toFile(), "rw")) {
            f.setLength(1000);
        }
        UserError e = assertThrows(UserError.class, () -> Checkpoints.resolve(damaged, s -> { }));
        assertTrue(e.getMessage().contains("is damaged: model.safetensors has 1000 bytes"), e.getMessage());
        // the run folder falls back to step 2 with one warning, and steps 3-4 come out as they did
        List<String> warnings = new ArrayList<>();
        assertEquals(b.resolve("checkpoints/step-000002"), Checkpoints.resolve(b, warnings::add));
        assertEquals(1, warnings.size());
        assertTrue(warnings.get(0).contains("skipping checkpoint " + damaged) && warnings.get(0).contains("1000 bytes"),
                warnings.get(0));
        try (Trainer t = new Trainer(small(b, Map.of()), b, s -> { })) {
            t.run(s -> { });
        }
        List<JsonNode> ma = stepLines(a), mb = stepLines(b);
        assertEquals(4, mb.size());
        for (int i = 0; i < 4; i++) {
            assertEquals(comparable(ma.get(i)), comparable(mb.get(i)), "step " + (i + 1));
        }
        assertNull(Checkpoints.damage(damaged)); // written again
    }

    @Test
    void aTornLastMetricsLineIsDroppedOnResume() throws Exception {
        Path a = tmp.resolve("a"), b = tmp.resolve("b");
        train(small(a, Map.of()), null);
        train(small(b, Map.of("train.max_steps", 2)), null);
        Files.writeString(b.resolve("metrics.jsonl"), "{\"step\":3,\"reward_me", java.nio.file.StandardOpenOption.APPEND);
        train(small(b, Map.of()), b);
        List<JsonNode> ma = stepLines(a), mb = stepLines(b);
        assertEquals(4, mb.size());
        for (int i = 0; i < 4; i++) {
            assertEquals(comparable(ma.get(i)), comparable(mb.get(i)), "step " + (i + 1));
        }
    }

    @Test
    void aSecondTrainerOnTheSameFolderRefuses() throws Exception {
        Path out = tmp.resolve("busy");
        try (Trainer first = new Trainer(small(out, Map.of()), null, s -> { })) {
            UserError e = assertThrows(UserError.class, () -> new Trainer(small(out, Map.of()), null, s -> { }));
            assertTrue(e.getMessage().contains("is in use by another trainer"), e.getMessage());
        }
        // the lock went with the first trainer (which left its config.yaml: a run, replaced only when asked)
        try (Trainer again = new Trainer(small(out, Map.of()), null, true, s -> { })) {
            assertTrue(Files.exists(out.resolve("config.yaml")));
        }
    }

    @Test
    void impossibleSizesFailBeforeAnyWork() throws Exception {
        Path out = tmp.resolve("huge");
        UserError heap = assertThrows(UserError.class, () -> new Trainer(small(out, Map.of("rollout.n", 100_000_000)), null, s -> { }));
        assertTrue(heap.getMessage().contains("rollout.n × train.batch_size = 400,000,000 sequences")
                && heap.getMessage().contains("Java heap"), heap.getMessage());
        // a million sequences' KV cache (hundreds of GiB) against the host's memory
        UserError host = assertThrows(UserError.class, () -> new Trainer(small(out, Map.of("rollout.n", 1_000_000)), null, s -> { }));
        assertTrue(host.getMessage().contains("on the host") && host.getMessage().contains("the largest part is kv_cache")
                && host.getMessage().contains("rollout.n × train.batch_size"), host.getMessage());
        assertFalse(Files.exists(out.resolve("metrics.jsonl")));
        assertFalse(Files.exists(out.resolve("config.yaml")));
    }

    @Test
    void runningOutOfNativeMemoryMidRunIsOneLine() throws Exception {
        // a real allocation failure: the address space capped below what a 2,000-token rollout needs;
        // the pre-flight checks the host's memory, which this cap hides from it
        Path out = tmp.resolve("oom");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        ProcessBuilder pb = new ProcessBuilder("sh", "-c", "ulimit -v 3000000 && exec \"$0\" \"$@\"", java, "-Xmx256m",
                "-XX:ReservedCodeCacheSize=64m", "-XX:CompressedClassSpaceSize=64m", "-cp", System.getProperty("java.class.path"),
                "klrl.cli.Main", "train", "--model", TrainerTest.base.toString(), "--max-steps", "1", "--n", "32",
                "--set", "rollout.max_new_tokens=2000", "--set", "train.micro_batch_size=8", "--set", "eval.before_start=false",
                "--output-dir", out.toString()).redirectOutput(ProcessBuilder.Redirect.DISCARD);
        pb.environment().put("KLRL_PROGRESS", "0");
        Process p = pb.start();
        String err = new String(p.getErrorStream().readAllBytes());
        assertEquals(3, p.waitFor(), err);
        List<String> lines = err.lines().filter(l -> l.startsWith("error")).toList();
        assertEquals(1, lines.size(), err);
        assertTrue(lines.get(0).startsWith("error: out of memory (DefaultCPUAllocator: can't allocate memory"), err);
        assertFalse(err.contains("\tat "), err);
        assertFalse(Files.exists(out.resolve("checkpoints")));
    }

    /**
     * A training process killed with SIGKILL at a spread of moments within its steps (rollout, update,
     * checkpoint write), then resumed, ends with the metrics of a run that was never interrupted.
     */
    @Test
    void sigkillAtAnyMomentThenResumeGivesTheUninterruptedMetrics() throws Exception {
        Path ref = tmp.resolve("ref");
        Map<String, Object> cfg = Map.of("train.max_steps", 6, "checkpoint.every", 2);
        train(small(ref, cfg), null);
        List<JsonNode> want = stepLines(ref);
        Path yaml = tmp.resolve("run.yaml");
        Files.writeString(yaml, klrl.config.ConfigLoader.toYaml(small(tmp.resolve("killed"), cfg)));
        // after the line of step k: at once (the checkpoint write of every 2nd step) or later in step k+1
        int[][] kills = {{2, 0}, {3, 40}, {4, 0}, {4, 120}, {5, 250}};
        Path killed = tmp.resolve("killed");
        for (int[] k : kills) {
            // killed before its first checkpoint, the run starts again in its folder: --overwrite
            Process p = trainer(yaml, Files.exists(killed.resolve("checkpoints/latest")) ? "--resume" : "--overwrite");
            var lines = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream()));
            for (String l; (l = lines.readLine()) != null; ) {
                if (l.startsWith("step " + k[0] + "/")) {
                    Thread.sleep(k[1]);
                    p.destroyForcibly(); // SIGKILL on Linux
                    break;
                }
            }
            assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        }
        Process last = trainer(yaml, "--resume");
        last.getInputStream().transferTo(java.io.OutputStream.nullOutputStream());
        assertEquals(0, last.waitFor());
        List<JsonNode> got = stepLines(killed);
        assertEquals(want.size(), got.size());
        for (int i = 0; i < want.size(); i++) {
            assertEquals(comparable(want.get(i)), comparable(got.get(i)), "step " + (i + 1));
        }
        assertTrue(noTempFolders(killed));
    }

    /** The trainer in a JVM of its own, with this test run's class path; stdout is its step lines. */
    static Process trainer(Path yaml, String start) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "klrl.cli.Main", "train", "--config", yaml.toString()));
        if (start.equals("--resume")) {
            cmd.addAll(List.of("--resume", yaml.getParent().resolve("killed").toString()));
        } else {
            cmd.add(start);
        }
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD);
        return pb.start();
    }
}
