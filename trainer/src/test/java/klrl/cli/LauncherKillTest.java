package klrl.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.File;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.stream.Stream;
import klrl.run.TinyDefault;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A plain {@code java -jar} relaunches itself; the launcher killed with SIGKILL (no shutdown hook runs
 * to pass the signal on) takes the trainer it started with it, so the run resumes at once instead of
 * being refused while an orphan holds the folder's lock.
 */
@Tag("e2e") // real processes and a real signal
class LauncherKillTest {
    @TempDir Path tmp;

    @BeforeAll
    static void model() throws Exception {
        TinyDefault.ensure(s -> { }); // built before: the run below trains at once instead of warming the model up
    }

    @Test
    void aKilledLauncherTakesItsTrainerWithItAndTheRunResumes() throws Exception {
        Path jar = jar(tmp.resolve("trainer.jar"));
        Path run = tmp.resolve("run");
        // the tiny default with small steps, a checkpoint after each, and far more steps than the test waits for
        ProcessBuilder pb = new ProcessBuilder(java(), "-jar", jar.toString(), "train", "--output-dir", run.toString(),
                "--max-steps", "1000", "--batch-size", "4", "--n", "4", "--set", "train.mini_batch_size=2",
                "--set", "train.micro_batch_size=5", "--set", "eval.every=0", "--set", "eval.before_start=false",
                "--set", "checkpoint.every=1", "--set", "optim.schedule=constant")
                .directory(tmp.toFile()).redirectOutput(tmp.resolve("out.log").toFile()).redirectError(tmp.resolve("err.log").toFile());
        env(pb.environment());
        pb.environment().put("KLRL_MKL_ON_AMD", "0"); // no cc build: the relaunch has the malloc and heap settings to apply
        Process launcher = pb.start();
        ProcessHandle trainer = null;
        try {
            // the relaunched trainer, once it has written a checkpoint
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(300);
            while (trainer == null || !Files.isRegularFile(run.resolve("checkpoints/latest"))) {
                assertTrue(launcher.isAlive(), "the launcher ended: " + Files.readString(tmp.resolve("err.log")));
                assertTrue(System.nanoTime() < deadline, "no relaunched trainer with a checkpoint: " + Files.readString(tmp.resolve("err.log")));
                if (trainer == null) {
                    trainer = launcher.children().findFirst().orElse(null);
                }
                Thread.sleep(100);
            }
            launcher.destroyForcibly(); // SIGKILL
            assertTrue(launcher.waitFor(20, TimeUnit.SECONDS));
            try {
                trainer.onExit().get(20, TimeUnit.SECONDS);
            } catch (java.util.concurrent.TimeoutException e) {
                fail("the trainer (pid " + trainer.pid() + ") still runs 20 s after its launcher was killed");
            }
            String err = Files.readString(tmp.resolve("err.log"));
            assertTrue(err.contains("error: the process that started this trainer (pid " + launcher.pid() + ") ended, so the trainer"
                    + " stops without a checkpoint; resume from the last one with --resume"), err);
            try (Stream<Path> files = Files.list(tmp)) {
                assertTrue(files.noneMatch(f -> f.getFileName().toString().startsWith("hs_err")), "the trainer crashed: " + err);
            }
        } finally {
            launcher.destroyForcibly();
            if (trainer != null) {
                trainer.destroyForcibly(); // an orphan left by a failed assertion must not outlive the test
                trainer.onExit().get(20, TimeUnit.SECONDS);
            }
        }
        // at once: the lock went with the trainer; one more step from the last checkpoint
        int last = Integer.parseInt(Files.readString(run.resolve("checkpoints/latest")).strip().replaceAll("\\D", ""));
        ProcessBuilder resume = new ProcessBuilder(java(), "-cp", System.getProperty("java.class.path"), "klrl.cli.Main", "train",
                "--resume", run.toString(), "--max-steps", Integer.toString(last + 1))
                .directory(tmp.toFile()).redirectErrorStream(true);
        env(resume.environment());
        Process p = resume.start();
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        assertTrue(p.waitFor(300, TimeUnit.SECONDS), out);
        assertEquals(0, p.exitValue(), out);
        assertFalse(out.contains("in use by another trainer"), out);
        assertEquals(last + 1, Integer.parseInt(Files.readString(run.resolve("checkpoints/latest")).strip().replaceAll("\\D", "")), out);
    }

    private static String java() {
        return Path.of(System.getProperty("java.home"), "bin", "java").toString();
    }

    /** Whatever this test run inherited that would stop or alter the relaunch. */
    private static void env(Map<String, String> env) {
        env.remove(Launcher.MARK);
        env.remove(klrl.util.Processes.STARTER_PID);
        env.remove("KLRL_RELAUNCH");
        env.remove("KLRL_JAVA_OPTS");
        env.put("KLRL_PROGRESS", "0");
    }

    /**
     * A trainer jar for {@code java -jar}: the compiled classes with a Main-Class, and this test run's
     * class path (dependencies) in its Class-Path, as the packaged jar holds them inside.
     */
    static Path jar(Path jar) throws Exception {
        Path classes = Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        Manifest m = new Manifest();
        m.getMainAttributes().put(Attributes.Name.MANIFEST_VERSION, "1.0");
        m.getMainAttributes().put(Attributes.Name.MAIN_CLASS, Main.class.getName());
        List<String> cp = new ArrayList<>();
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            cp.add(Path.of(e).toAbsolutePath().toUri().toString());
        }
        m.getMainAttributes().put(Attributes.Name.CLASS_PATH, String.join(" ", cp));
        try (OutputStream f = Files.newOutputStream(jar); JarOutputStream out = new JarOutputStream(f, m);
             Stream<Path> all = Files.walk(classes)) {
            for (Path p : (Iterable<Path>) all.filter(Files::isRegularFile)::iterator) {
                out.putNextEntry(new JarEntry(classes.relativize(p).toString().replace(File.separatorChar, '/')));
                Files.copy(p, out);
                out.closeEntry();
            }
        }
        return jar;
    }
}
