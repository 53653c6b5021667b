package klrl.bench;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import klrl.data.Dataset;
import klrl.data.Rows;
import klrl.util.Json;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.example.data.simple.SimpleGroupFactory;
import org.apache.parquet.hadoop.ParquetWriter;
import org.apache.parquet.hadoop.example.ExampleParquetWriter;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.apache.parquet.io.LocalOutputFile;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.MessageTypeParser;

/**
 * data-load: how fast a set in DAPO-Math-17k's layout and shape (each problem 100 times, the prompt a
 * message list with DAPO's instruction around the problem, the gold in {@code reward_model}) reaches the
 * first training step of the built-in model, as JSONL and as parquet, at 10k, 100k and 1.79 M rows
 * (DAPO-Math-17k's 1,791,700): each in a trainer process of its own, timed from its launch to its
 * start-up data line and to "step 1/", with the process's peak resident memory then, beside the same for a
 * 40-row set; and a resume of the largest parquet run to its next step.
 */
final class DataLoadBench {
    static final int[] ROWS = {10_000, 100_000, 1_791_700};
    /** Each problem's rows, as DAPO-Math-17k repeats its 17,917 problems. */
    static final int REPEATS = 100;
    static final int SMALL = 40;
    /** A step as small as the trainer takes: what is measured is everything before it. */
    static final List<String> CHEAP = List.of("--set", "data.max_prompt_tokens=2048", "--set", "eval.every=0", "--set",
            "eval.before_start=false", "--set", "eval.max_examples=1", "--set", "train.batch_size=4", "--set", "train.mini_batch_size=4",
            "--set", "rollout.n=2");
    static final String INSTRUCTION = "Solve the following math problem step by step. The last line of your response should be of the"
            + " form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n";
    static final String REMINDER = "\n\nRemember to put your answer on its own line after \"Answer:\".";

    private DataLoadBench() {}

    static String setting() {
        return "rows in DAPO-Math-17k's layout (data_source, prompt list<struct<content, role>> with DAPO's instruction around a"
                + " generated problem of 60–960 characters, ability, reward_model {ground_truth, style}, extra_info {index}), each of"
                + " rows/" + REPEATS + " problems " + REPEATS + " times (row r holds problem r mod problems); JSONL written by this"
                + " bench, parquet by parquet-mr's example writer (SNAPPY, one file); each set trained by `train` in a process of its"
                + " own (the built-in model, cached; " + String.join(" ", CHEAP).replace("--set ", "") + ", max_steps 1):"
                + " seconds from its launch to its `data train:` line (every row read and checked, every distinct prompt measured;"
                + " the model not loaded yet) and to `step 1/`; peak_rss_at_data_line_mb and peak_rss_mb = its VmHWM at those lines"
                + " (the second holds the step's own peak, which moves with the lengths of the prompts it draws); rows_per_s = rows /"
                + " the seconds to the data line beyond the 40-row set's (JVM start and the held-out set are the same for both), shown"
                + " from half a second on;"
                + " bytes_per_row = the rows as kept (klrl.data.Rows), measured in this process";
    }

    static void run(ObjectNode o, List<String> jvm, int[] rows, Path parquet) throws Exception {
        o.put("setting", setting());
        if (parquet != null) { // a file the bench cannot read is refused before the generated sets take their minutes
            Dataset.read(parquet.toString(), null, null);
        }
        klrl.run.TinyDefault.ensure(s -> { }); // built once, before anything is timed
        Path dir = Files.createTempDirectory("klrl-bench-data");
        try {
            ArrayNode out = o.putArray("rows");
            Path small = dir.resolve("small.parquet");
            writeParquet(small, SMALL, SMALL);
            ObjectNode base = measure(jvm, dir, small, "parquet", null);
            out.add(base);
            Path largest = null;
            for (int n : rows) {
                int problems = Math.max(1, n / REPEATS);
                Path jsonl = dir.resolve("dapo-" + n + ".jsonl");
                writeJsonl(jsonl, n, problems);
                out.add(measure(jvm, dir, jsonl, "jsonl", base));
                Files.delete(jsonl);
                Path pq = dir.resolve("dapo-" + n + ".parquet");
                writeParquet(pq, n, problems);
                out.add(measure(jvm, dir, pq, "parquet", base));
                if (largest != null) {
                    Files.delete(largest);
                }
                largest = pq;
            }
            if (parquet != null) {
                out.add(measure(jvm, dir, parquet, "parquet (given)", base));
                largest = parquet;
            }
            if (largest != null) {
                o.set("resume", resume(jvm, dir, largest));
            }
        } finally {
            klrl.checkpoint.Checkpoints.deleteTree(dir);
        }
    }

    /** One set trained to its first step in a process of its own. */
    static ObjectNode measure(List<String> jvm, Path dir, Path set, String format, ObjectNode base)
            throws Exception {
        ObjectNode r = Json.MAPPER.createObjectNode();
        r.put("format", format);
        kept(set, r);
        Path run = dir.resolve("run-" + set.getFileName());
        Child c = train(jvm, set, run, List.of("--max-steps", "1"), "step 1/");
        r.put("seconds_to_data_line", c.dataLine);
        r.put("seconds_to_step_1", c.step);
        r.put("peak_rss_at_data_line_mb", c.dataPeakMb);
        r.put("peak_rss_mb", c.peakMb);
        if (base != null && c.failed == null) {
            double beyond = c.dataLine - base.get("seconds_to_data_line").asDouble();
            if (beyond >= 0.5) { // below, the difference is the noise of two JVM starts
                r.put("rows_per_s", Math.round(r.get("rows").asLong() / beyond));
            }
            r.put("peak_rss_at_data_line_above_small_set_mb", c.dataPeakMb - base.get("peak_rss_at_data_line_mb").asLong());
            r.put("peak_rss_above_small_set_mb", c.peakMb - base.get("peak_rss_mb").asLong());
        }
        if (c.failed != null) {
            r.put("failed", c.failed);
        }
        klrl.checkpoint.Checkpoints.deleteTree(run);
        return r;
    }

    /** The set as this process keeps it: rows, distinct prompts, bytes a row. */
    static void kept(Path set, ObjectNode r) throws IOException {
        Rows kept = Dataset.read(set.toString(), null, null).examples();
        r.put("rows", kept.size());
        r.put("distinct_prompts", kept.prompts());
        r.put("file_mb", Files.size(set) / 1e6);
        r.put("bytes_per_row", Math.round(10.0 * kept.bytes() / kept.size()) / 10.0);
    }

    /** The largest set trained one step to its end (a checkpoint), then resumed to its second step. */
    static ObjectNode resume(List<String> jvm, Path dir, Path set) throws Exception {
        Path run = dir.resolve("run-resume");
        Child first = train(jvm, set, run, List.of("--max-steps", "1"), null);
        ObjectNode r = Json.MAPPER.createObjectNode();
        r.put("set", set.getFileName().toString());
        if (first.failed != null) {
            r.put("failed", first.failed);
            return r;
        }
        Child again = train(jvm, set, run, List.of("--max-steps", "2", "--resume", run.toString()), "step 2/");
        r.put("seconds_to_data_line", again.dataLine);
        r.put("seconds_to_step_2", again.step);
        r.put("peak_rss_at_data_line_mb", again.dataPeakMb);
        r.put("peak_rss_mb", again.peakMb);
        if (again.failed != null) {
            r.put("failed", again.failed);
        }
        return r;
    }

    /** What a trainer process showed: seconds from launch to its data line and to the awaited step, its peak memory then. */
    record Child(double dataLine, double step, long dataPeakMb, long peakMb, String failed) {}

    /**
     * Trains {@code set} in a process of its own; with {@code until} ("step 1/") the process is stopped once a
     * line holds it (its peak read first), else it runs to its end.
     */
    static Child train(List<String> jvm, Path set, Path run, List<String> extra, String until) throws Exception {
        List<String> cmd = new ArrayList<>(jvm);
        cmd.addAll(List.of("klrl.cli.Main", "train", "--output-dir", run.toString(), "--set", "data.train=" + set));
        cmd.addAll(CHEAP);
        cmd.addAll(extra);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().put("KLRL_PROGRESS", "0");
        klrl.util.Processes.endWithThisProcess(pb);
        long t0 = System.nanoTime();
        Process p = pb.start();
        // a child that hangs is ended, so the bench reports it instead of waiting for ever
        java.util.concurrent.CompletableFuture.runAsync(p::destroyForcibly,
                java.util.concurrent.CompletableFuture.delayedExecutor(30, TimeUnit.MINUTES));
        double data = -1, step = -1;
        long peak = 0, dataPeak = 0;
        String last = "";
        try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            for (String l; (l = in.readLine()) != null; ) {
                double at = (System.nanoTime() - t0) / 1e9;
                if (!l.isBlank()) {
                    last = l.strip();
                }
                peak = Math.max(peak, peakMb(p.pid()));
                if (data < 0 && l.startsWith("data train:")) {
                    data = at;
                    dataPeak = peak;
                }
                if (until != null && l.startsWith(until)) {
                    step = at;
                    p.destroy();
                    break;
                }
            }
        }
        p.waitFor(60, TimeUnit.SECONDS);
        if (p.isAlive()) {
            p.destroyForcibly().waitFor();
        }
        boolean ok = until != null ? step >= 0 : p.exitValue() == 0;
        return new Child(data, step, dataPeak, peak, ok ? null : "exited " + p.exitValue() + ": " + last);
    }

    /** The process's peak resident set (VmHWM) in MB, 0 when it is gone. */
    static long peakMb(long pid) {
        return BenchCommand.peakRssKb(Long.toString(pid)) / 1024;
    }

    /** The problems of a set: seeded text of 60–960 characters with some LaTeX, and integer answers. */
    static String[][] problems(int n) {
        SplittableRandom r = new SplittableRandom(17917);
        String[] words = {"Let", "the", "of", "a", "and", "is", "function", "triangle", "integer", "positive", "sum", "find", "such",
            "that", "number", "circle", "radius", "point", "sequence", "real", "value", "polynomial", "roots", "probability", "digits",
            "remainder", "divided", "by", "area", "smallest", "largest", "how", "many", "ways", "where", "each", "square"};
        String[][] out = new String[n][];
        for (int i = 0; i < n; i++) {
            int len = 60 + (int) (r.nextDouble() * r.nextDouble() * 900);
            StringBuilder t = new StringBuilder("Problem ").append(i + 1).append(". ");
            while (t.length() < len) {
                t.append(r.nextDouble() < 0.15 ? "$x^" + r.nextInt(1, 10) + " + " + r.nextInt(100) + "x$"
                        : words[r.nextInt(words.length)]).append(r.nextDouble() < 0.08 ? ". " : " ");
            }
            out[i] = new String[] {t.toString().strip() + "?", Integer.toString(r.nextInt(10000)), String.format("%016x", r.nextLong())};
        }
        return out;
    }

    static void writeJsonl(Path f, int rows, int problems) throws IOException {
        String[][] p = problems(problems);
        try (BufferedWriter w = Files.newBufferedWriter(f, StandardCharsets.UTF_8)) {
            for (int i = 0; i < rows; i++) {
                String[] q = p[i % problems];
                ObjectNode row = Json.MAPPER.createObjectNode();
                row.put("data_source", "math_dapo");
                ObjectNode m = row.putArray("prompt").addObject();
                m.put("content", INSTRUCTION + q[0] + REMINDER);
                m.put("role", "user");
                row.put("ability", "MATH");
                row.putObject("reward_model").put("ground_truth", q[1]).put("style", "rule-lighteval/MATH_v2");
                row.putObject("extra_info").put("index", q[2]);
                w.write(Json.MAPPER.writeValueAsString(row));
                w.write('\n');
            }
        }
    }

    static final MessageType DAPO = MessageTypeParser.parseMessageType("message schema {"
            + " optional binary data_source (STRING);"
            + " optional group prompt (LIST) { repeated group list { optional group element {"
            + " optional binary content (STRING); optional binary role (STRING); } } }"
            + " optional binary ability (STRING);"
            + " optional group reward_model { optional binary ground_truth (STRING); optional binary style (STRING); }"
            + " optional group extra_info { optional binary index (STRING); } }");

    static void writeParquet(Path f, int rows, int problems) throws IOException {
        String[][] p = problems(problems);
        Files.deleteIfExists(f);
        SimpleGroupFactory groups = new SimpleGroupFactory(DAPO);
        try (ParquetWriter<Group> w = ExampleParquetWriter.builder(new LocalOutputFile(f)).withType(DAPO)
                .withCompressionCodec(CompressionCodecName.SNAPPY).build()) {
            for (int i = 0; i < rows; i++) {
                String[] q = p[i % problems];
                Group g = groups.newGroup();
                g.add("data_source", "math_dapo");
                Group m = g.addGroup("prompt").addGroup("list").addGroup("element");
                m.add("content", INSTRUCTION + q[0] + REMINDER);
                m.add("role", "user");
                g.add("ability", "MATH");
                g.addGroup("reward_model").append("ground_truth", q[1]).append("style", "rule-lighteval/MATH_v2");
                g.addGroup("extra_info").add("index", q[2]);
                w.write(g);
            }
        }
    }
}
