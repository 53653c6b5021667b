package klrl.train;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import klrl.run.TinyDefault;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * SIGTERM while the built-in model's warm-up runs (its first use): the process ends without a JVM
 * crash, says the warm-up is not resumable, and leaves no half-built folder; a half-built folder of a
 * process that is gone is removed at the next start.
 */
@Tag("e2e") // a real process and a real signal
class WarmUpSignalTest {
    @TempDir Path tmp;

    @Test
    void sigtermDuringTheWarmUpEndsCleanlyAndStaleFoldersGo() throws Exception {
        Path cache = Files.createDirectories(tmp.resolve("cache"));
        // a half-built folder left by a process that no longer runs
        Process gone = new ProcessBuilder("true").start();
        gone.waitFor();
        Path stale = Files.createDirectories(cache.resolve(TinyDefault.VERSION + ".tmp-" + gone.pid()));
        Files.writeString(stale.resolve("config.json"), "{}");
        ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
                klrl.TestPaths.classPath(), "klrl.cli.Main", "train", "--output-dir", tmp.resolve("run").toString(), "--max-steps", "1")
                .directory(tmp.toFile()).redirectOutput(ProcessBuilder.Redirect.DISCARD);
        pb.environment().put("KLRL_CACHE", cache.toString());
        pb.environment().put("KLRL_PROGRESS", "0");
        Process p = pb.start();
        StringBuilder err = new StringBuilder();
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getErrorStream(), StandardCharsets.UTF_8));
        boolean signalled = false;
        for (String l; (l = r.readLine()) != null; ) {
            err.append(l).append('\n');
            if (!signalled && l.contains("sft step 100/")) { // mid-way through the warm-up's steps
                assertFalse(Files.exists(stale), "the dead process's half-built folder was removed at start");
                // SIGTERM (Process.destroy would also close the pipes this test reads)
                new ProcessBuilder("kill", "-TERM", Long.toString(p.pid())).start().waitFor();
                signalled = true;
            }
        }
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), err.toString());
        assertTrue(signalled, err.toString());
        assertTrue(p.exitValue() != 134 && p.exitValue() != 139, "crashed: exit " + p.exitValue() + "\n" + err);
        assertTrue(err.toString().contains("stopped during the built-in model's warm-up, which is not resumable: it starts again"
                + " at the next run"), err.toString());
        assertFalse(err.toString().contains("\tat "), err.toString());
        try (var files = Files.list(tmp)) {
            assertTrue(files.noneMatch(f -> f.getFileName().toString().startsWith("hs_err")), "the JVM crashed: " + err);
        }
        try (var files = Files.list(cache)) {
            // the builders' lock file stays (it is how concurrent first runs wait for one build); no half-built folder does
            List<Path> left = files.filter(f -> !f.getFileName().toString().equals(TinyDefault.VERSION + ".lock")).toList();
            assertTrue(left.isEmpty(), "left in the cache: " + left);
        }
    }
}
