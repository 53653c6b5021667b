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
import klrl.checkpoint.Checkpoints;
import klrl.util.UserError;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A run folder holds one run: a new run where one is is refused (nothing touched), resumed, or replaced whole; files
 * this trainer did not write are never removed.
 */
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

    /** A whole run started with --overwrite. */
    static void trainOver(klrl.config.TrainConfig c) throws Exception {
        try (Trainer t = new Trainer(c, null, true, s -> { })) {
            t.run(s -> { });
        }
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

    /** A user's own config.yaml and model folder: refused in one line naming them, --overwrite or not, and left byte for byte. */
    @Test
    void aFolderThisTrainerDidNotWriteIsRefusedAndNeverDeleted() throws Exception {
        Path x = tmp.resolve("home/runs/x");
        Files.createDirectories(x.resolve("checkpoints/my-llama-sft"));
        Files.writeString(x.resolve("config.yaml"), "model: my-llama\nlr: 2e-5\n");
        byte[] weights = new byte[4096];
        new java.util.Random(1).nextBytes(weights);
        Files.write(x.resolve("checkpoints/my-llama-sft/model.safetensors"), weights);
        Map<String, String> before = snapshot(x);
        for (boolean overwrite : new boolean[] {false, true}) {
            UserError e = assertThrows(UserError.class, () -> new Trainer(TrainerTest.small(x, Map.of()), null, overwrite, s -> { }));
            assertTrue(e.getMessage().contains("did not write (config.yaml, checkpoints/my-llama-sft)")
                    && !e.getMessage().contains("--overwrite") && !e.getMessage().contains("--resume")
                    && !e.getMessage().contains("\n"), e.getMessage());
            assertEquals("model: my-llama\nlr: 2e-5\n", Files.readString(x.resolve("config.yaml")));
            assertTrue(java.util.Arrays.equals(weights, Files.readAllBytes(x.resolve("checkpoints/my-llama-sft/model.safetensors"))));
            Map<String, String> after = snapshot(x);
            after.remove(".lock");
            assertEquals(before, after, "nothing written, nothing removed");
        }
        // a run.json some other program wrote does not make a folder this trainer's
        Path y = tmp.resolve("home/runs/y");
        Files.createDirectories(y);
        Files.writeString(y.resolve("run.json"), "{\"name\": \"mine\"}");
        Files.writeString(y.resolve("metrics.jsonl"), "{\"loss\": 1}\n");
        UserError e = assertThrows(UserError.class, () -> new Trainer(TrainerTest.small(y, Map.of()), null, true, s -> { }));
        assertTrue(e.getMessage().contains("did not write (metrics.jsonl, run.json)"), e.getMessage());
        assertEquals("{\"name\": \"mine\"}", Files.readString(y.resolve("run.json")));
        assertEquals("{\"loss\": 1}\n", Files.readString(y.resolve("metrics.jsonl")));
    }

    /** --overwrite removes the run's own files and nothing else: a user's files beside them and in checkpoints/ stay. */
    @Test
    void overwriteRemovesOnlyTheRunsOwnFiles() throws Exception {
        Path run = tmp.resolve("run");
        TrainerTest.train(TrainerTest.small(run, Map.of("train.max_steps", 2)), null);
        String firstId = klrl.util.Json.read(run.resolve("run.json")).path("run_id").asText();
        Files.writeString(run.resolve("notes.txt"), "lr sweep, second try\n");
        Files.writeString(run.resolve("train.log"), "step 1/2\n");
        // replaced by a trainer that only starts: every file of the run is gone, checkpoints/ with them
        try (Trainer t = new Trainer(TrainerTest.small(run, Map.of("train.seed", 7, "train.max_steps", 2)), null, true, s -> { })) {
            assertFalse(Files.exists(run.resolve("metrics.jsonl")));
            assertFalse(Files.exists(run.resolve("samples.jsonl")));
            assertFalse(Files.exists(run.resolve("checkpoints")));
            assertEquals(0, eventFiles(run));
            assertEquals("lr sweep, second try\n", Files.readString(run.resolve("notes.txt")));
            assertEquals("step 1/2\n", Files.readString(run.resolve("train.log")));
            assertFalse(firstId.equals(klrl.util.Json.read(run.resolve("run.json")).path("run_id").asText()), "a new run, a new id");
        }
        trainOver(TrainerTest.small(run, Map.of("train.seed", 7, "train.max_steps", 2)));
        // a user's file in checkpoints/: the refusal says it stays, and --overwrite keeps it
        Files.writeString(run.resolve("checkpoints/keep-me.txt"), "the good one is step 2\n");
        UserError e = assertThrows(UserError.class, () -> TrainerTest.train(TrainerTest.small(run, Map.of()), null));
        assertTrue(e.getMessage().contains("holds a run (last step 2, checkpoint step-000002)") && e.getMessage().contains("--overwrite")
                && e.getMessage().contains("keeping checkpoints/keep-me.txt") && !e.getMessage().contains("\n"), e.getMessage());
        trainOver(TrainerTest.small(run, Map.of("train.max_steps", 2)));
        assertEquals(2, TrainerTest.stepLines(run).size());
        assertEquals(List.of("keep-me.txt", "latest", "step-000002"), Files.list(run.resolve("checkpoints"))
                .map(p -> p.getFileName().toString()).sorted().toList());
        assertEquals("the good one is step 2\n", Files.readString(run.resolve("checkpoints/keep-me.txt")));
        assertEquals("lr sweep, second try\n", Files.readString(run.resolve("notes.txt")));
        assertEquals(1, eventFiles(run));
    }

    /**
     * --overwrite removes the event files this trainer wrote (TensorBoard's prefix and its own .klrl suffix) and keeps, byte
     * for byte, one another program wrote into the folder under TensorBoard's prefix alone.
     */
    @Test
    void overwriteKeepsEventFilesAnotherProgramWrote() throws Exception {
        Path run = tmp.resolve("run");
        TrainerTest.train(TrainerTest.small(run, Map.of("train.max_steps", 2)), null);
        // the run's event file under the name an earlier process of it (another pid, another second) gave it
        Path own;
        try (var s = Files.list(run)) {
            own = s.filter(p -> p.getFileName().toString().startsWith(klrl.metrics.TensorBoardLog.PREFIX)).findFirst().orElseThrow();
        }
        Path earlier = run.resolve(klrl.metrics.TensorBoardLog.PREFIX + "1.earlier-host.1.klrl");
        Files.move(own, earlier);
        Path foreign = run.resolve(klrl.metrics.TensorBoardLog.PREFIX + "123.host");
        byte[] events = new byte[2048];
        new java.util.Random(3).nextBytes(events);
        Files.write(foreign, events);
        UserError e = assertThrows(UserError.class, () -> TrainerTest.train(TrainerTest.small(run, Map.of()), null));
        assertTrue(e.getMessage().contains("holds a run") && e.getMessage().contains("keeping events.out.tfevents.123.host,")
                && !e.getMessage().contains("\n"), e.getMessage());
        trainOver(TrainerTest.small(run, Map.of("train.seed", 7, "train.max_steps", 2)));
        assertTrue(java.util.Arrays.equals(events, Files.readAllBytes(foreign)), "another program's event file, byte for byte");
        assertFalse(Files.exists(earlier), "the replaced run's event file is gone");
        assertEquals(2, eventFiles(run), "the new run's event file beside the other program's");
        assertEquals(2, TrainerTest.stepLines(run).size());
    }

    /**
     * A prompt the tokenizer or the chat template refuses, or a run too large for the memory, fails in its one line before
     * --overwrite removes anything: the run in the folder stays as it was.
     */
    @Test
    void refusedRunsRemoveNothingWithOverwrite() throws Exception {
        Path run = tmp.resolve("run");
        TrainerTest.train(TrainerTest.small(run, Map.of("train.max_steps", 2)), null);
        Map<String, String> before = snapshot(run);
        before.remove(".lock");
        assertTrue(before.containsKey("config.yaml") && before.containsKey("metrics.jsonl")
                && before.containsKey("checkpoints/step-000002/trainer_state.json"), before.toString());
        // a model whose chat template refuses every conversation
        Path model = tmp.resolve("refusing-model");
        Files.createDirectories(model);
        try (var s = Files.list(TrainerTest.base)) {
            for (Path f : s.toList()) {
                Files.copy(f, model.resolve(f.getFileName()));
            }
        }
        var tc = (com.fasterxml.jackson.databind.node.ObjectNode) klrl.util.Json.read(model.resolve("tokenizer_config.json"));
        tc.put("chat_template", "{{ raise_exception('this model takes no chat') }}");
        Files.writeString(model.resolve("tokenizer_config.json"), tc.toString());
        Map<String, Map<String, Object>> bad = new java.util.LinkedHashMap<>();
        bad.put(": prompt has \\d+ tokens, more than data.max_prompt_tokens=4", Map.of("data.max_prompt_tokens", 4));
        bad.put(":1: the prompt is a message list, which the model's chat template renders; data.chat_template is false",
                Map.of("data.train", DataRunTest.DATA.resolve("verl-system.parquet").toString(), "data.chat_template", false));
        bad.put("chat_template raised: this model takes no chat", Map.of("model.path", model.toString()));
        // the start-up memory check, made as the networks are laid out
        // (8 M new tokens: about 1.2 TB of activations, past any host)
        bad.put("this run needs about \\d+\\.\\d GiB on the host, which has .*", Map.of("rollout.max_new_tokens", 8_000_000));
        for (var b : bad.entrySet()) {
            UserError e = assertThrows(UserError.class, () -> trainOver(TrainerTest.small(run, b.getValue())));
            assertTrue(e.getMessage().matches(".*" + b.getKey().replace("(", "\\(").replace(")", "\\)")) && !e.getMessage().contains("\n"),
                    e.getMessage());
            Map<String, String> after = snapshot(run);
            after.remove(".lock");
            assertEquals(before, after, b.getValue() + ": the run in the folder is as it was");
        }
    }

    /**
     * A symbolic link among a run's names (checkpoints/ kept on another disk, say) is the user's: --overwrite refuses in one
     * line naming it and deletes nothing through it or in the folder.
     */
    @Test
    void overwriteDoesNotDeleteThroughASymbolicLink() throws Exception {
        Path run = tmp.resolve("run");
        TrainerTest.train(TrainerTest.small(run, Map.of("train.max_steps", 2)), null);
        Path elsewhere = tmp.resolve("big-disk/checkpoints");
        Files.createDirectories(elsewhere.resolve("step-000001"));
        Files.writeString(elsewhere.resolve("step-000001/notes.txt"), "the good one\n");
        Checkpoints.deleteTree(run.resolve("checkpoints"));
        Files.createSymbolicLink(run.resolve("checkpoints"), elsewhere);
        Map<String, String> target = snapshot(elsewhere), before = snapshot(run);
        before.remove(".lock");
        UserError e = assertThrows(UserError.class, () -> trainOver(TrainerTest.small(run, Map.of())));
        assertTrue(e.getMessage().contains("checkpoints is a symbolic link") && !e.getMessage().contains("\n"), e.getMessage());
        assertEquals("the good one\n", Files.readString(elsewhere.resolve("step-000001/notes.txt")));
        assertEquals(target, snapshot(elsewhere), "nothing deleted through the link");
        assertTrue(Files.isSymbolicLink(run.resolve("checkpoints")));
        Map<String, String> after = snapshot(run);
        after.remove(".lock");
        assertEquals(before, after, "nothing removed in the folder either");
        // the same for a run's file that is a link: neither it nor what it points to is removed
        Files.delete(run.resolve("checkpoints"));
        Path log = tmp.resolve("big-disk/metrics.jsonl");
        Files.move(run.resolve("metrics.jsonl"), log);
        Files.createSymbolicLink(run.resolve("metrics.jsonl"), log);
        String kept = Files.readString(log);
        UserError f = assertThrows(UserError.class, () -> trainOver(TrainerTest.small(run, Map.of())));
        assertTrue(f.getMessage().contains("metrics.jsonl is a symbolic link") && !f.getMessage().contains("\n"), f.getMessage());
        assertTrue(Files.isSymbolicLink(run.resolve("metrics.jsonl")));
        assertEquals(kept, Files.readString(log));
        assertTrue(Files.exists(run.resolve("samples.jsonl")), "nothing else removed either");
    }

    /** run.json is written when a run starts and kept when it is resumed; a run from before run.json still resumes. */
    @Test
    void runJsonMarksARunAndResumingKeepsIt() throws Exception {
        Path run = tmp.resolve("run");
        Files.createDirectories(run);
        Files.writeString(run.resolve("notes.txt"), "mine\n"); // unrelated files do not stop a start
        TrainerTest.train(TrainerTest.small(run, Map.of("train.max_steps", 2)), null);
        String marker = Files.readString(run.resolve("run.json"));
        var m = klrl.util.Json.MAPPER.readTree(marker);
        java.util.UUID.fromString(m.path("run_id").asText());
        java.time.Instant.parse(m.path("started").asText());
        TrainerTest.train(TrainerTest.small(run, Map.of("train.max_steps", 3)), run);
        assertEquals(marker, Files.readString(run.resolve("run.json")), "a resumed run is the same run");
        assertEquals("mine\n", Files.readString(run.resolve("notes.txt")));
        // a run written before run.json existed: it resumes (and is not marked now), but is not replaced
        Files.delete(run.resolve("run.json"));
        TrainerTest.train(TrainerTest.small(run, Map.of("train.max_steps", 4)), run);
        assertEquals(4, TrainerTest.stepLines(run).size());
        assertFalse(Files.exists(run.resolve("run.json")));
        UserError e = assertThrows(UserError.class, () -> new Trainer(TrainerTest.small(run, Map.of()), null, true, s -> { }));
        assertTrue(e.getMessage().contains("did not write (") && !e.getMessage().contains("--overwrite"), e.getMessage());
        assertEquals(4, TrainerTest.stepLines(run).size());
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
